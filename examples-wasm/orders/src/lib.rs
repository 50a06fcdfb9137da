//! Function chaining, from the article's order samples.
//!
//! - `ProcessOrderOrchestrator` validates an order, checks the inventory,
//!   takes the payment and sends a confirmation, stopping at the first step
//!   that says no. Its custom status names the step that stopped it.
//! - `OrderWorkflow` chains `ProcessOrder` -> `ChargePayment` ->
//!   `SendConfirmationEmail`, each output the next one's input.
//!
//! An order is JSON such as
//! `{"id":"o-1","item":"book","quantity":2,"amount":30.0,"customerEmail":"a@example.com"}`.
//! It fails validation when `quantity` is not positive, the inventory check
//! when `item` is `"out-of-stock"`, and its payment is declined when
//! `amount` is over 1000.

use perdure_sdk::prelude::*;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Order {
    id: String,
    item: String,
    quantity: i64,
    amount: f64,
    customer_email: String,
}

/// What `ProcessOrder` hands on to `ChargePayment`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProcessedOrder {
    order: Order,
    status: String,
}

/// What `ChargePayment` hands on to `SendConfirmationEmail`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Receipt {
    order_id: String,
    customer_email: String,
    charged: f64,
}

/// Payments above this amount are declined.
const PAYMENT_LIMIT: f64 = 1000.0;

const SUCCESS: &str = "Order processed successfully!";
const FAILURE: &str = "Order processing failed.";

fn process_order_orchestrator(ctx: &OrchestrationContext, order: Order) -> Result<String> {
    let steps = [
        ("ValidateOrder", "validation"),
        ("CheckInventory", "inventory"),
        ("ProcessPayment", "payment"),
    ];
    for (activity, step) in steps {
        let passed: bool = ctx.call_activity(activity, &order)?;
        if !passed {
            ctx.set_custom_status(&json!({ "failedStep": step }))?;
            return Ok(FAILURE.to_owned());
        }
    }
    let _sent: String = ctx.call_activity("SendConfirmationEmail", &order.customer_email)?;
    ctx.set_custom_status(&json!({ "failedStep": null }))?;
    Ok(SUCCESS.to_owned())
}

fn validate_order(order: Order) -> Result<bool> {
    Ok(order.quantity > 0 && !order.id.is_empty())
}

fn check_inventory(order: Order) -> Result<bool> {
    Ok(order.item != "out-of-stock")
}

fn process_payment(order: Order) -> Result<bool> {
    Ok(order.amount <= PAYMENT_LIMIT)
}

fn send_confirmation_email(email: String) -> Result<String> {
    perdure_sdk::log::info(&format!("confirmation sent to {email}"));
    Ok(format!("Confirmation sent to {email}"))
}

fn order_workflow(ctx: &OrchestrationContext, order: Order) -> Result<String> {
    let processed: ProcessedOrder = ctx.call_activity("ProcessOrder", &order)?;
    let receipt: Receipt = ctx.call_activity("ChargePayment", &processed)?;
    ctx.call_activity("SendConfirmationEmail", &receipt.customer_email)
}

fn process_order(order: Order) -> Result<ProcessedOrder> {
    if order.quantity <= 0 {
        return Err(Error::invalid_argument(format!(
            "order {} has no items",
            order.id
        )));
    }
    Ok(ProcessedOrder {
        order,
        status: "processed".into(),
    })
}

fn charge_payment(processed: ProcessedOrder) -> Result<Receipt> {
    let order = processed.order;
    if order.amount > PAYMENT_LIMIT {
        return Err(Error::application(format!(
            "payment of {} for order {} was declined",
            order.amount, order.id
        )));
    }
    Ok(Receipt {
        order_id: order.id,
        customer_email: order.customer_email,
        charged: order.amount,
    })
}

perdure_sdk::export_app! {
    Function::orchestrator("ProcessOrderOrchestrator", process_order_orchestrator),
    Function::activity("ValidateOrder", validate_order),
    Function::activity("CheckInventory", check_inventory),
    Function::activity("ProcessPayment", process_payment),
    Function::activity("SendConfirmationEmail", send_confirmation_email),
    Function::orchestrator("OrderWorkflow", order_workflow),
    Function::activity("ProcessOrder", process_order),
    Function::activity("ChargePayment", charge_payment),
}
