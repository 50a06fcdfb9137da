//! Durable entities.
//!
//! - Entity `Counter`: a JSON number with operations `add` (a number),
//!   `reset`, `get` and `delete`. After `POST .../entities/Counter/c1?op=add`
//!   with body `5` twice, `GET .../entities/Counter/c1` answers `10`.
//! - Entity `Account`: a balance with `deposit`, `withdraw` (fails, leaving
//!   the balance unchanged, when the balance is too small) and `balance`.
//! - Orchestrator `TransferFunds` moves an amount between two accounts in a
//!   critical section: both accounts are locked, so no other operation sees
//!   the money in flight and the total never changes. `AuditAccounts` locks
//!   a set of accounts and sums their balances: a consistent snapshot.
//! - HTTP function `Counters` (route `counters/{key}`): `POST` with a
//!   number signals `add` through the durable client, `GET` reads the
//!   count.

use perdure_sdk::prelude::*;

/// A count, stored as a bare JSON number.
#[derive(Default, Serialize, Deserialize)]
#[serde(transparent)]
struct Counter(i64);

impl Counter {
    fn add(&mut self, amount: i64) -> Result<i64> {
        self.0 = self
            .0
            .checked_add(amount)
            .ok_or_else(|| Error::invalid_argument("the count would overflow"))?;
        Ok(self.0)
    }

    fn reset(&mut self, (): ()) -> Result<()> {
        self.0 = 0;
        Ok(())
    }
}

impl Entity for Counter {
    fn operations() -> Operations<Self> {
        Operations::new()
            .op("add", Counter::add)
            .op("reset", Counter::reset)
            .read("get", |c: &Counter| c.0)
            .delete("delete")
    }
}

/// A bank account's balance in cents.
#[derive(Default, Serialize, Deserialize)]
#[serde(transparent)]
struct Account(i64);

impl Account {
    fn deposit(&mut self, amount: i64) -> Result<i64> {
        if amount < 0 {
            return Err(Error::invalid_argument("a deposit cannot be negative"));
        }
        self.0 += amount;
        Ok(self.0)
    }

    fn withdraw(&mut self, amount: i64) -> Result<i64> {
        if amount < 0 {
            return Err(Error::invalid_argument("a withdrawal cannot be negative"));
        }
        if amount > self.0 {
            return Err(Error::application(format!(
                "insufficient funds: the balance is {}, the withdrawal {amount}",
                self.0
            )));
        }
        self.0 -= amount;
        Ok(self.0)
    }
}

impl Entity for Account {
    fn operations() -> Operations<Self> {
        Operations::new()
            .op("deposit", Account::deposit)
            .op("withdraw", Account::withdraw)
            .read("balance", |a: &Account| a.0)
    }
}

#[derive(Deserialize)]
struct Transfer {
    from: String,
    to: String,
    amount: i64,
}

/// Moves `amount` from one account to another if the first has enough;
/// returns whether it did.
fn transfer_funds(ctx: &OrchestrationContext, transfer: Transfer) -> Result<Value> {
    let from = EntityId::new("Account", &transfer.from);
    let to = EntityId::new("Account", &transfer.to);
    ctx.lock_entities(&[from.clone(), to.clone()])?;
    let balance: i64 = ctx.call_entity(&from, "balance", None::<&()>)?.unwrap_or(0);
    let moved = balance >= transfer.amount;
    if moved {
        ctx.call_entity::<i64>(&from, "withdraw", Some(&transfer.amount))?;
        ctx.call_entity::<i64>(&to, "deposit", Some(&transfer.amount))?;
    }
    ctx.unlock_entities();
    Ok(json!({ "transferred": moved, "amount": transfer.amount }))
}

#[derive(Deserialize)]
struct Audit {
    accounts: Vec<String>,
}

/// The sum of the balances of `accounts`, read in one critical section.
fn audit_accounts(ctx: &OrchestrationContext, audit: Audit) -> Result<Value> {
    let ids: Vec<EntityId> = audit
        .accounts
        .iter()
        .map(|key| EntityId::new("Account", key))
        .collect();
    ctx.lock_entities(&ids)?;
    let mut total = 0i64;
    for id in &ids {
        total += ctx
            .call_entity::<i64>(id, "balance", None::<&()>)?
            .unwrap_or(0);
    }
    ctx.unlock_entities();
    Ok(json!({ "total": total }))
}

/// `POST /api/counters/{key}` with a number adds it; `GET` reads the count.
fn counters(req: HttpRequest) -> Result<HttpResponse> {
    let key = req.param("key").unwrap_or_default().to_owned();
    let id = EntityId::new("Counter", &key);
    let client = DurableClient::new();
    if req.method == "POST" {
        let amount: i64 = req.json()?;
        client.signal_entity(&id, "add", Some(&amount))?;
        return Ok(HttpResponse::new(202));
    }
    match client.read_entity_state::<i64>(&id)? {
        Some(count) => HttpResponse::json(200, &json!({ "key": key, "count": count })),
        None => HttpResponse::json(404, &json!({ "key": key, "error": "no such counter" })),
    }
}

perdure_sdk::export_app! {
    Function::entity::<Counter>("Counter"),
    Function::entity::<Account>("Account"),
    Function::orchestrator("TransferFunds", transfer_funds),
    Function::orchestrator("AuditAccounts", audit_accounts),
    Function::http("Counters", counters)
        .route("counters/{key}")
        .methods(["GET", "POST"]),
}
