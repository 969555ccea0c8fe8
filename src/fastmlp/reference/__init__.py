"""The pure-NumPy reference implementation of fastmlp: readable, slow, obviously right.

It is the oracle the tests check the C engine against. ``fastmlp.reference.MLP`` has
the same API as ``fastmlp.MLP``; :mod:`fastmlp.reference.functional` holds the maths
(forward, every loss, backward, the SGD step), :mod:`fastmlp.reference.rng` the
pure-Python twin of the engine's random numbers and :mod:`fastmlp.reference.curvature`
the Hessian-, Gauss-Newton- and Jacobian-vector products (R-operator, forward mode).
"""

from fastmlp.reference.model import MLP

__all__ = ["MLP"]
