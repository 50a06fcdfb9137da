"""Python guests for the tests (`py_guests`): a determinism probe, a waiter,
and hostile functions. Names start with `PyT`."""

import hashlib
import os
import random
import time
import uuid

import perdure

app = perdure.FunctionApp()


def _fingerprint() -> dict:
    """Everything an interpreter could make nondeterministic: the clock,
    `random` and `os.urandom` (more than 4 KiB each), uuid4, set and dict
    iteration, and string hashing."""
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    return {
        "time": time.time(),
        "monotonic": time.monotonic(),
        "random": random.random(),
        "randbytes": hashlib.sha256(random.randbytes(6000)).hexdigest(),
        "urandom": hashlib.sha256(os.urandom(5000)).hexdigest(),
        "uuid": str(uuid.uuid4()),
        "set": list(set(words)),
        "frozenset": list(frozenset(w.upper() for w in words)),
        "dict": list({w: len(w) for w in words}),
        "hash": hash("perdure"),
    }


@app.orchestrator(name="PyTReplayProbe")
def replay_probe(ctx: perdure.OrchestrationContext) -> dict:
    before = _fingerprint()
    # The journal records this input: a replay that computed anything
    # differently fails with `nondeterminism`.
    ctx.call_activity("PyTEcho", before)
    ctx.set_custom_status("waiting")
    go = ctx.wait_for_external_event("Go")
    after = _fingerprint()
    ctx.call_activity("PyTEcho", after)
    return {"before": before, "after": after, "go": go}


@app.activity(name="PyTEcho")
def echo(value):
    return value


@app.orchestrator(name="PyTWaiter")
def waiter(ctx: perdure.OrchestrationContext, name: str) -> str:
    data = ctx.wait_for_external_event("Go")
    return f"{name}: {data}"


@app.http(name="PyTHostile", route="py-hostile/{what}", auth="anonymous")
def hostile(req: perdure.HttpRequest):
    what = req.route_params["what"]
    if what == "spin":
        while True:
            pass
    if what == "hog":
        hoard = []
        while True:
            hoard.append(bytearray(1 << 20))
    if what == "huge":
        return "x" * (int(req.params.get("mib", "2")) << 20)
    if what == "raise":
        raise ValueError("the guest raised")
    if what == "recurse":
        def down(n):
            return down(n + 1) + 1
        return str(down(0))
    return perdure.HttpResponse(f"no such hostile act: {what}", 404)


App = app.export()
