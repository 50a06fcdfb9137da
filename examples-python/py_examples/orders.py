"""Function chaining, as in `examples-wasm/orders`.

- `PyProcessOrderOrchestrator` validates an order, checks the inventory,
  takes the payment and sends a confirmation, stopping at the first step
  that says no; its custom status names the step that stopped it.
- `PyOrderWorkflow` chains `PyProcessOrder` -> `PyChargePayment` ->
  `PySendConfirmationEmail`, each output the next one's input.

An order is JSON such as `{"id":"o-1","item":"book","quantity":2,
"amount":30.0,"customerEmail":"a@example.com"}`. It fails validation when
`quantity` is not positive, the inventory check when `item` is
`"out-of-stock"`, and its payment is declined when `amount` is over 1000.
"""

from dataclasses import dataclass

import perdure

bp = perdure.Blueprint()

PAYMENT_LIMIT = 1000.0
SUCCESS = "Order processed successfully!"
FAILURE = "Order processing failed."


@dataclass
class Order:
    id: str
    item: str
    quantity: int
    amount: float
    customer_email: str

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "item": self.item,
            "quantity": self.quantity,
            "amount": self.amount,
            "customerEmail": self.customer_email,
        }


@bp.orchestrator(name="PyProcessOrderOrchestrator")
def process_order_orchestrator(ctx: perdure.OrchestrationContext, order: Order) -> str:
    steps = [
        ("PyValidateOrder", "validation"),
        ("PyCheckInventory", "inventory"),
        ("PyProcessPayment", "payment"),
    ]
    for activity, step in steps:
        if not ctx.call_activity(activity, order.to_json()):
            ctx.set_custom_status({"failedStep": step})
            return FAILURE
    ctx.call_activity("PySendConfirmationEmail", order.customer_email)
    ctx.set_custom_status({"failedStep": None})
    return SUCCESS


@bp.activity(name="PyValidateOrder")
def validate_order(order: Order) -> bool:
    return order.quantity > 0 and order.id != ""


@bp.activity(name="PyCheckInventory")
def check_inventory(order: Order) -> bool:
    return order.item != "out-of-stock"


@bp.activity(name="PyProcessPayment")
def process_payment(order: Order) -> bool:
    return order.amount <= PAYMENT_LIMIT


@bp.activity(name="PySendConfirmationEmail")
def send_confirmation_email(email: str) -> str:
    perdure.log.info(f"confirmation sent to {email}")
    return f"Confirmation sent to {email}"


@bp.orchestrator(name="PyOrderWorkflow")
def order_workflow(ctx: perdure.OrchestrationContext, order: Order) -> str:
    processed = ctx.call_activity("PyProcessOrder", order.to_json())
    receipt = ctx.call_activity("PyChargePayment", processed)
    return ctx.call_activity("PySendConfirmationEmail", receipt["customerEmail"])


@bp.activity(name="PyProcessOrder")
def process_order(order: Order) -> dict:
    if order.quantity <= 0:
        raise perdure.Error.invalid_argument(f"order {order.id} has no items")
    return {"order": order.to_json(), "status": "processed"}


@bp.activity(name="PyChargePayment")
def charge_payment(processed: dict) -> dict:
    order = processed["order"]
    if order["amount"] > PAYMENT_LIMIT:
        raise perdure.Error.application(
            f"payment of {order['amount']} for order {order['id']} was declined"
        )
    return {
        "orderId": order["id"],
        "customerEmail": order["customerEmail"],
        "charged": order["amount"],
    }
