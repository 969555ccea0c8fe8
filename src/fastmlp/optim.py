"""Optimizers whose updates run in the C engine, usable inside ``MLP.fit`` or on their
own on NumPy arrays.

Each follows the update rule and defaults of the ``torch.optim`` optimizer with the
same name (weight decay included), so hyper-parameters carry over from PyTorch:

``SGD(lr, momentum=0, dampening=0, nesterov=False, weight_decay=0)``,
``Adagrad(lr=0.01, lr_decay=0, weight_decay=0, initial_accumulator_value=0, eps=1e-10)``,
``Adadelta(lr=1.0, rho=0.9, eps=1e-6, weight_decay=0)``,
``RMSprop(lr=0.01, alpha=0.99, eps=1e-8, weight_decay=0, momentum=0, centered=False)``,
``Adam(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0, amsgrad=False)``,
``AdamW(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False)``,
``Rprop(lr=0.01, etas=(0.5, 1.2), step_sizes=(1e-6, 50))``, and
``DeltaBarDelta(lr=0.01, kappa=1e-4, phi=0.1, theta=0.7, weight_decay=0)`` (Jacobs 1988,
which PyTorch lacks).

The course's notation maps onto them as follows. Classical momentum
``v = a v - e g;  w = w + v`` is ``SGD(lr=e, momentum=a)``: PyTorch keeps
``b = a b + g`` and steps ``w -= e b``, so ``v = -e b`` exactly when the learning rate
is constant (with a schedule, PyTorch's form scales the whole velocity by the current
rate). Nesterov momentum ``v = a v - e g(w + a v)`` is ``nesterov=True``, in the
reformulation of Sutskever et al. (2013) that evaluates the gradient at the current
weights. ``dampening`` d scales the new gradient by (1 - d) in the velocity.
L2 regularization ``E + (lambda/2)|w|^2`` is ``weight_decay=lambda``; AdamW decays the
weights directly instead (``w *= 1 - lr * weight_decay``).

Standalone use::

    opt = fastmlp.optim.Adam(lr=1e-3)
    opt.step([W, b], [dW, db])   # updates W and b in place; state kept per position
    saved = opt.state_dict()
    opt2 = fastmlp.optim.Adam(); opt2.load_state_dict(saved)
"""

from __future__ import annotations

import math
import numbers
import threading
import weakref
from collections.abc import Sequence

import numpy as np

from fastmlp._buffers import faulted
from fastmlp._engine import optimizer_step
from fastmlp.clip import clip_grad_norm_, clip_grad_value_

__all__ = [
    "Optimizer", "SGD", "Adagrad", "Adadelta", "RMSprop", "Adam", "AdamW", "Rprop",
    "DeltaBarDelta", "clip_grad_norm_", "clip_grad_value_",
]

_BINDING = threading.Lock()  # Optimizer.model_state's check and binding, as one step


class Optimizer:
    """Base class: hyper-parameters, per-position state, and the C update.

    Subclasses set ``kind`` (the engine's code), ``slots`` (names of the state arrays,
    in the engine's slot order) and implement ``_engine_hyper`` and ``_used_slots``.
    """

    kind: int = -1
    slots: tuple[str, ...] = ()

    def __init__(self, lr: float) -> None:
        self.lr = _number("lr", lr, low=0.0, low_open=True)
        self.state: list[dict] = []
        self.threads = 1  # standalone steps; fit uses the model's threads
        self._owner: weakref.ref | None = None  # the model whose training holds the state

    # -- what the engine needs -----------------------------------------------------------
    def hyper(self) -> dict:
        """The constructor arguments (for repr, state_dict and equality checks)."""
        raise NotImplementedError

    def _engine_hyper(self) -> dict:
        """Hyper-parameters under the engine's field names (csrc/fastmlp.h fm_optimizer)."""
        raise NotImplementedError

    def _used_slots(self) -> tuple[str, ...]:
        return self.slots

    def _init_slot(self, name: str, shape: tuple, dtype: np.dtype) -> np.ndarray:
        return faulted(shape, dtype)

    def _new_state(self, shape: tuple, dtype: np.dtype) -> dict:
        state = {"step": 0}
        for name in self._used_slots():
            state[name] = self._init_slot(name, shape, dtype)
        return state

    def _slot_arrays(self, state: dict) -> list[np.ndarray | None]:
        return [state.get(name) for name in self.slots] + [None] * (3 - len(self.slots))

    def state_for(self, position: int, shape: tuple, dtype: np.dtype) -> dict:
        """The state of parameter `position`, created on first use and checked after."""
        while len(self.state) <= position:
            self.state.append({})
        state = self.state[position]
        if not state:
            state.update(self._new_state(shape, dtype))
        else:
            self._check_shapes(state, position, shape, dtype)
        return state

    def _check_shapes(self, state: dict, position: int, shape: tuple, dtype: np.dtype) -> None:
        for name in self._used_slots():
            arr = state[name]
            if arr.shape != tuple(shape) or arr.dtype != dtype:
                raise ValueError(
                    f"{type(self).__name__} state of parameter {position} is "
                    f"{arr.shape} {arr.dtype} but the parameter is {tuple(shape)} {dtype}; "
                    "use a new optimizer for a different model"
                )

    def check_model(self, model: object) -> None:
        """Raise the ValueError :meth:`model_state` would raise for `model` (its state
        bound to another model, or shaped for another), binding nothing: ``fit`` checks
        before it changes anything, and binds once it trains."""
        with _BINDING:
            owner = None if self._owner is None else self._owner()
            other = self._owner is not None and owner is not model
            if self.state and other and self._used_slots():
                raise ValueError(self._taken_message())
            if self.state and self.state[0] and not (other and not self._used_slots()):
                self._check_shapes(self.state[0], 0, (model._n_params,), model.dtype)

    def _taken_message(self) -> str:
        return (f"this {type(self).__name__} holds the training state of another model "
                "(one it trained, perhaps deleted since); "
                "an optimizer's state belongs to the model it trained. Use a new "
                "optimizer, or call optimizer.reset() to start this model's state afresh")

    def model_state(self, model: object) -> dict:
        """The state of `model`'s parameters as one flat vector (what ``fit`` updates).

        The first ``fit`` binds the optimizer's state to its model, and later fits of that
        model continue from it. Another model cannot take that state over (its update would
        silently start from the first model's moments and step count): it raises
        ValueError; call :meth:`reset`, or use a new optimizer, to train another model. A
        rule that keeps no state (SGD without momentum) serves any model: it starts afresh.
        A state restored by :meth:`load_state_dict` is bound to the next model that uses it.
        """
        with _BINDING:  # two threads' fits cannot both take an unbound state
            owner = None if self._owner is None else self._owner()
            if self.state and self._owner is not None and owner is not model and \
                    not self._used_slots():  # a rule with no state (plain SGD): nothing
                self.state = []              # to carry over; another model starts afresh
            if self.state and self._owner is not None and owner is not model:
                raise ValueError(self._taken_message())
            state = self.state_for(0, (model._n_params,), model.dtype)
            self._owner = weakref.ref(model)
            return state

    def __copy__(self) -> Optimizer:
        """A copy with state arrays of its own (a shallow copy would share them), bound to
        the same model."""
        new = type(self).__new__(type(self))
        new.__dict__.update(self.__dict__)
        new.state = [{k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in s.items()}
                     for s in self.state]
        return new

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_owner"] = None  # a weak reference cannot be pickled; unbound after loading
        return state

    def __setstate__(self, state: dict) -> None:
        state.setdefault("_owner", None)
        self.__dict__.update(state)

    # -- standalone use -----------------------------------------------------------------
    def step(self, params: Sequence[np.ndarray], grads: Sequence[np.ndarray]) -> None:
        """Update each array of `params` in place from the matching array of `grads`.

        Arrays must be float32 or float64 and writeable; each gradient must have its
        parameter's shape and dtype. State is kept per list position.
        """
        if isinstance(params, np.ndarray) or isinstance(grads, np.ndarray):
            raise TypeError("params and grads must be lists of arrays (wrap one array in [ ])")
        params, grads = list(params), list(grads)
        if len(params) != len(grads):
            raise ValueError(f"got {len(params)} parameter arrays but {len(grads)} gradients")
        checked = []
        for i, (p, g) in enumerate(zip(params, grads)):
            if not isinstance(p, np.ndarray) or p.dtype not in (np.float32, np.float64):
                raise TypeError(f"params[{i}] must be a float32 or float64 NumPy array")
            if not p.flags.writeable:
                raise ValueError(f"params[{i}] is read-only; the update is in place")
            g = np.asarray(g)
            if g.shape != p.shape:
                raise ValueError(f"grads[{i}] has shape {g.shape}, params[{i}] has {p.shape}")
            if g.dtype != p.dtype:
                raise TypeError(f"grads[{i}] is {g.dtype} but params[{i}] is {p.dtype}")
            checked.append((p, np.ascontiguousarray(g)))
        for i, (p, g) in enumerate(checked):
            state = self.state_for(i, p.shape, p.dtype)
            work = p if p.flags.c_contiguous else np.ascontiguousarray(p)
            state["step"] = optimizer_step(
                self.kind, self._engine_hyper(), state["step"], work.reshape(-1),
                g.reshape(-1), self._slot_arrays_flat(state), self.lr, self.threads,
            )
            if work is not p:
                p[...] = work

    def _slot_arrays_flat(self, state: dict) -> list[np.ndarray | None]:
        return [None if a is None else a.reshape(-1) for a in self._slot_arrays(state)]

    def reset(self) -> None:
        """Forget all state (the next step starts afresh), and the model it belonged to."""
        self.state = []
        self._owner = None

    def state_dict(self) -> dict:
        """A deep copy of the hyper-parameters and the full state."""
        return {
            "optimizer": type(self).__name__,
            "hyper": dict(self.hyper()),
            "state": [{k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in s.items()}
                      for s in self.state],
        }

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore what `state_dict` returned (hyper-parameters included)."""
        if not isinstance(state_dict, dict) or state_dict.get("optimizer") != type(self).__name__:
            found = state_dict.get("optimizer") if isinstance(state_dict, dict) else state_dict
            raise ValueError(f"not a {type(self).__name__} state dict (found {found!r})")
        fresh = type(self)(**state_dict["hyper"])
        state = []
        for i, s in enumerate(state_dict["state"]):
            if s and set(s) != {"step", *fresh._used_slots()}:
                raise ValueError(f"state {i} has keys {sorted(s)}, expected "
                                 f"{sorted({'step', *fresh._used_slots()})}")
            state.append({k: (np.array(v) if k != "step" else int(v)) for k, v in s.items()})
        self.__dict__.update(fresh.__dict__)
        self.state = state

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.hyper().items())
        return f"{type(self).__name__}({args})"


class SGD(Optimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum (torch.optim.SGD)."""

    kind, slots = 0, ("momentum_buffer",)

    def __init__(self, lr: float = 0.01, momentum: float = 0.0, dampening: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0) -> None:
        super().__init__(lr)
        self.momentum = _number("momentum", momentum, low=0.0)
        self.dampening = _number("dampening", dampening)
        self.nesterov = bool(nesterov)
        self.weight_decay = _number("weight_decay", weight_decay, low=0.0)
        if self.nesterov and (self.momentum <= 0 or self.dampening != 0):
            raise ValueError("Nesterov momentum requires a momentum > 0 and zero dampening")

    def hyper(self):
        return {"lr": self.lr, "momentum": self.momentum, "dampening": self.dampening,
                "nesterov": self.nesterov, "weight_decay": self.weight_decay}

    def _engine_hyper(self):
        return {"momentum": self.momentum, "dampening": self.dampening,
                "nesterov": self.nesterov, "weight_decay": self.weight_decay}

    def _used_slots(self):
        return self.slots if self.momentum > 0 else ()


class Adagrad(Optimizer):
    """AdaGrad (torch.optim.Adagrad). ``eps_placement="inside"`` divides by
    ``sqrt(sum + eps)`` (Keras's and the course's form) instead of PyTorch's
    ``sqrt(sum) + eps``."""

    kind, slots = 1, ("sum",)

    def __init__(self, lr: float = 0.01, lr_decay: float = 0.0, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0, eps: float = 1e-10,
                 eps_placement: str = "outside") -> None:
        super().__init__(lr)
        self.lr_decay = _number("lr_decay", lr_decay, low=0.0)
        self.weight_decay = _number("weight_decay", weight_decay, low=0.0)
        self.initial_accumulator_value = _number(
            "initial_accumulator_value", initial_accumulator_value, low=0.0)
        self.eps = _number("eps", eps, low=0.0, low_open=True)
        self.eps_placement = _eps_placement(eps_placement)

    def hyper(self):
        return {"lr": self.lr, "lr_decay": self.lr_decay, "weight_decay": self.weight_decay,
                "initial_accumulator_value": self.initial_accumulator_value, "eps": self.eps,
                "eps_placement": self.eps_placement}

    def _engine_hyper(self):
        return {"lr_decay": self.lr_decay, "weight_decay": self.weight_decay, "eps": self.eps,
                "eps_inside": self.eps_placement == "inside"}

    def _init_slot(self, name, shape, dtype):
        return np.full(shape, self.initial_accumulator_value, dtype=dtype)


class Adadelta(Optimizer):
    """AdaDelta (torch.optim.Adadelta)."""

    kind, slots = 2, ("square_avg", "acc_delta")

    def __init__(self, lr: float = 1.0, rho: float = 0.9, eps: float = 1e-6,
                 weight_decay: float = 0.0) -> None:
        super().__init__(lr)
        self.rho = _number("rho", rho, low=0.0, high=1.0)
        self.eps = _number("eps", eps, low=0.0, low_open=True)
        self.weight_decay = _number("weight_decay", weight_decay, low=0.0)

    def hyper(self):
        return {"lr": self.lr, "rho": self.rho, "eps": self.eps,
                "weight_decay": self.weight_decay}

    def _engine_hyper(self):
        return {"rho": self.rho, "eps": self.eps, "weight_decay": self.weight_decay}


class RMSprop(Optimizer):
    """RMSProp (torch.optim.RMSprop), optionally centered and with momentum.
    ``eps_placement="inside"`` divides by ``sqrt(square_avg + eps)`` (Keras's and the
    course's form) instead of PyTorch's ``sqrt(square_avg) + eps``."""

    kind, slots = 3, ("square_avg", "momentum_buffer", "grad_avg")

    def __init__(self, lr: float = 0.01, alpha: float = 0.99, eps: float = 1e-8,
                 weight_decay: float = 0.0, momentum: float = 0.0, centered: bool = False,
                 eps_placement: str = "outside") -> None:
        super().__init__(lr)
        self.alpha = _number("alpha", alpha, low=0.0, high=1.0)
        self.eps = _number("eps", eps, low=0.0, low_open=True)
        self.weight_decay = _number("weight_decay", weight_decay, low=0.0)
        self.momentum = _number("momentum", momentum, low=0.0)
        self.centered = bool(centered)
        self.eps_placement = _eps_placement(eps_placement)

    def hyper(self):
        return {"lr": self.lr, "alpha": self.alpha, "eps": self.eps,
                "weight_decay": self.weight_decay, "momentum": self.momentum,
                "centered": self.centered, "eps_placement": self.eps_placement}

    def _engine_hyper(self):
        return {"alpha": self.alpha, "eps": self.eps, "weight_decay": self.weight_decay,
                "momentum": self.momentum, "centered": self.centered,
                "eps_inside": self.eps_placement == "inside"}

    def _used_slots(self):
        return tuple(s for s in self.slots
                     if s == "square_avg" or (s == "momentum_buffer" and self.momentum > 0)
                     or (s == "grad_avg" and self.centered))


class Adam(Optimizer):
    """Adam (torch.optim.Adam); ``weight_decay`` adds L2 to the gradient."""

    kind, slots = 4, ("exp_avg", "exp_avg_sq", "max_exp_avg_sq")
    default_weight_decay = 0.0

    def __init__(self, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float | None = None,
                 amsgrad: bool = False) -> None:
        super().__init__(lr)
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"betas must be a pair (beta1, beta2), got {betas!r}")
        self.betas = (_number("betas[0]", betas[0], low=0.0, high=1.0),
                      _number("betas[1]", betas[1], low=0.0, high=1.0))
        self.eps = _number("eps", eps, low=0.0, low_open=True)
        if weight_decay is None:
            weight_decay = self.default_weight_decay
        self.weight_decay = _number("weight_decay", weight_decay, low=0.0)
        self.amsgrad = bool(amsgrad)

    def hyper(self):
        return {"lr": self.lr, "betas": tuple(self.betas), "eps": self.eps,
                "weight_decay": self.weight_decay, "amsgrad": self.amsgrad}

    def _engine_hyper(self):
        return {"beta1": self.betas[0], "beta2": self.betas[1], "eps": self.eps,
                "weight_decay": self.weight_decay, "amsgrad": self.amsgrad}

    def _used_slots(self):
        return self.slots if self.amsgrad else self.slots[:2]


class AdamW(Adam):
    """AdamW (torch.optim.AdamW): decoupled weight decay ``w *= 1 - lr * weight_decay``."""

    kind = 5
    default_weight_decay = 1e-2


class Rprop(Optimizer):
    """Resilient backpropagation (torch.optim.Rprop): per-weight step sizes that grow by
    ``etas[1]`` while the gradient's sign holds and shrink by ``etas[0]`` when it flips
    (and then skip that weight's update once). ``lr`` is the initial step size; a
    learning-rate schedule does not change later steps."""

    kind, slots = 6, ("prev", "step_size")

    def __init__(self, lr: float = 0.01, etas: tuple[float, float] = (0.5, 1.2),
                 step_sizes: tuple[float, float] = (1e-6, 50.0)) -> None:
        super().__init__(lr)
        if not isinstance(etas, (tuple, list)) or len(etas) != 2:
            raise TypeError(f"etas must be a pair (etaminus, etaplus), got {etas!r}")
        if not isinstance(step_sizes, (tuple, list)) or len(step_sizes) != 2:
            raise TypeError(f"step_sizes must be a pair (min, max), got {step_sizes!r}")
        eminus = _number("etas[0]", etas[0], low=0.0, low_open=True, high=1.0)
        eplus = _number("etas[1]", etas[1], low=1.0, low_open=True, high=math.inf)
        smin = _number("step_sizes[0]", step_sizes[0], low=0.0)
        smax = _number("step_sizes[1]", step_sizes[1], low=0.0)
        if smin > smax:
            raise ValueError(f"step_sizes must be (min, max) with min <= max, got {step_sizes}")
        self.etas, self.step_sizes = (eminus, eplus), (smin, smax)

    def hyper(self):
        return {"lr": self.lr, "etas": tuple(self.etas), "step_sizes": tuple(self.step_sizes)}

    def _engine_hyper(self):
        return {"etaminus": self.etas[0], "etaplus": self.etas[1],
                "step_min": self.step_sizes[0], "step_max": self.step_sizes[1]}

    def _init_slot(self, name, shape, dtype):
        return np.full(shape, self.lr if name == "step_size" else 0.0, dtype=dtype)


class DeltaBarDelta(Optimizer):
    """Delta-bar-delta (Jacobs 1988): every weight has its own rate ``e``, starting at
    ``lr``. With ``d = dE/dw`` and its running average ``dbar = (1 - theta) d + theta
    dbar``: if ``dbar_prev * d > 0`` then ``e += kappa`` (additive growth), if ``< 0`` then
    ``e *= 1 - phi`` (multiplicative shrink); then ``w -= e d``."""

    kind, slots = 7, ("rate", "bar_delta")

    def __init__(self, lr: float = 0.01, kappa: float = 1e-4, phi: float = 0.1,
                 theta: float = 0.7, weight_decay: float = 0.0) -> None:
        super().__init__(lr)
        self.kappa = _number("kappa", kappa, low=0.0)
        self.phi = _number("phi", phi, low=0.0, high=1.0)
        self.theta = _number("theta", theta, low=0.0, high=1.0)
        self.weight_decay = _number("weight_decay", weight_decay, low=0.0)

    def hyper(self):
        return {"lr": self.lr, "kappa": self.kappa, "phi": self.phi, "theta": self.theta,
                "weight_decay": self.weight_decay}

    def _engine_hyper(self):
        return {"kappa": self.kappa, "phi": self.phi, "theta": self.theta,
                "weight_decay": self.weight_decay}

    def _init_slot(self, name, shape, dtype):
        return faulted(shape, dtype, self.lr if name == "rate" else 0.0)


OPTIMIZERS: dict[str, type[Optimizer]] = {
    cls.__name__: cls
    for cls in (SGD, Adagrad, Adadelta, RMSprop, Adam, AdamW, Rprop, DeltaBarDelta)
}


def _eps_placement(value: object) -> str:
    if value not in ("outside", "inside"):
        raise ValueError(f"eps_placement must be 'outside' (PyTorch: sqrt(v) + eps) or "
                         f"'inside' (Keras: sqrt(v + eps)), got {value!r}")
    return str(value)


def _number(name: str, value: object, *, low: float | None = None, high: float | None = None,
            low_open: bool = False) -> float:
    """A finite real in [low, high) (or (low, high) with low_open)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, got {value!r}")
    v = float(value)
    if math.isnan(v) or (math.isinf(v) and high != math.inf):
        raise ValueError(f"{name} must be finite, got {v}")
    if low is not None and (v < low or (low_open and v == low)):
        raise ValueError(f"{name} must be {'>' if low_open else '>='} {low}, got {v}")
    if high is not None and high != math.inf and v >= high:
        raise ValueError(f"{name} must be < {high}, got {v}")
    return v
