"""Durable entities, as in `examples-wasm/counter`.

- Entity `PyCounter`: a number with operations `add`, `reset`, `get` and
  `delete`.
- Entity `PyAccount`: a balance with `deposit`, `withdraw` (fails, leaving
  the balance unchanged, when it is too small) and `balance`.
- Orchestrator `PyTransferFunds` moves an amount between two accounts with
  both locked, so no one sees the money in flight.
- HTTP function `PyCounters` (route `py/counters/{key}`): `POST` a number
  to signal `add`, `GET` to read the count.
"""

import perdure

bp = perdure.Blueprint()


@bp.entity(name="PyCounter")
class Counter(perdure.Entity):
    def initial_state(self) -> int:
        return 0

    def add(self, amount: int) -> int:
        self.state += amount
        return self.state

    def reset(self) -> None:
        self.state = 0

    def get(self) -> int:
        return self.state

    def delete(self) -> None:
        self.delete_state()


@bp.entity(name="PyAccount")
class Account(perdure.Entity):
    def initial_state(self) -> int:
        return 0

    def deposit(self, amount: int) -> int:
        if amount < 0:
            raise perdure.Error.invalid_argument("a deposit cannot be negative")
        self.state += amount
        return self.state

    def withdraw(self, amount: int) -> int:
        if amount < 0:
            raise perdure.Error.invalid_argument("a withdrawal cannot be negative")
        if amount > self.state:
            raise perdure.Error.application(
                f"insufficient funds: the balance is {self.state}, the withdrawal {amount}"
            )
        self.state -= amount
        return self.state

    def balance(self) -> int:
        return self.state


@bp.orchestrator(name="PyTransferFunds")
def transfer_funds(ctx: perdure.OrchestrationContext, transfer: dict) -> dict:
    source = perdure.EntityId("PyAccount", transfer["from"])
    target = perdure.EntityId("PyAccount", transfer["to"])
    amount = transfer["amount"]
    with ctx.critical_section(source, target):
        moved = (ctx.call_entity(source, "balance") or 0) >= amount
        if moved:
            ctx.call_entity(source, "withdraw", amount)
            ctx.call_entity(target, "deposit", amount)
    return {"transferred": moved, "amount": amount}


@bp.http(name="PyCounters", route="py/counters/{key}", methods=["GET", "POST"])
def counters(req: perdure.HttpRequest) -> perdure.HttpResponse:
    key = req.route_params.get("key", "")
    counter = perdure.EntityId("PyCounter", key)
    client = perdure.DurableClient()
    if req.method == "POST":
        client.signal_entity(counter, "add", req.get_json())
        return perdure.HttpResponse(status_code=202)
    count = client.read_entity_state(counter)
    if count is None:
        return perdure.HttpResponse.json({"key": key, "error": "no such counter"}, 404)
    return perdure.HttpResponse.json({"key": key, "count": count})
