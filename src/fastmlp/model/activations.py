"""Hidden-layer activations: names, engine codes and their documented derivatives.

=============  ======================  ==========================================
name           f(z)                    f'(z) (subgradient at kinks)
=============  ======================  ==========================================
identity       z                       1
sigmoid        1 / (1 + exp(-z))       f(z) (1 - f(z))       (alias: logistic)
tanh           tanh(z)                 1 - f(z)^2
relu           max(0, z)               1 if z > 0 else 0     (relu'(0) = 0)
leaky_relu     z if z > 0 else s z     1 if z > 0 else s     (leaky_relu'(0) = s)
=============  ======================  ==========================================

`s` is the ``leaky_slope`` of the model (default 0.01, must lie in [0, 1)).
The engine computes each derivative from the activation's output, so only
activations are stored during the forward pass.
"""

from __future__ import annotations

ACTIVATIONS: dict[str, int] = {
    "identity": 0,
    "sigmoid": 1,
    "tanh": 2,
    "relu": 3,
    "leaky_relu": 4,
}
_ALIASES = {"linear": "identity", "logistic": "sigmoid"}


def canonical_activation(name: object) -> str:
    """Return the canonical activation name, or raise ValueError naming the choices."""
    if not isinstance(name, str):
        raise TypeError(f"activation must be a string, got {type(name).__name__}")
    key = _ALIASES.get(name, name)
    if key not in ACTIVATIONS:
        raise ValueError(
            f"unknown activation {name!r}; choose one of {', '.join(ACTIVATIONS)}"
        )
    return key


def activation_code(name: str) -> int:
    """The engine's integer code of an activation name."""
    return ACTIVATIONS[canonical_activation(name)]
