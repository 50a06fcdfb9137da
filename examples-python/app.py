"""The Python examples, one function app (`functions/py_examples.wasm`).

Names start with `Py` and routes with `py/`, so that they are served beside
the Rust examples, with the same behaviour: each module mirrors one Rust
example in `examples-wasm/`.
"""

import perdure

from py_examples import approval, counter, fan_out_fan_in, greet, orders

app = perdure.FunctionApp()
for module in (greet, orders, fan_out_fan_in, approval, counter):
    app.register_functions(module.bp)

App = app.export()
