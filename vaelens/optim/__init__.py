"""Pure-JAX optimisers of flat parameter vectors, shared by the galaxy fits and the MAP.

- :func:`lbfgs_minimize` -- L-BFGS (``optax.lbfgs``, zoom line search) in one
  ``lax.while_loop``;
- :func:`lockstep_lbfgs_minimize` -- L-BFGS of a batch of independent problems in lock step
  (one batched evaluation per step), for batched galaxy fits;
- :func:`bfgs_minimize` -- dense BFGS with a recoverable backtracking line search, for the MAP:
  its iteration limit may be traced, it keeps an auxiliary output of the objective and its
  inverse Hessian estimates the posterior widths that size the Laplace finite differences.
"""

from vaelens.optim.bfgs import BFGSState, bfgs_init, bfgs_minimize, bfgs_step
from vaelens.optim.lbfgs import LBFGSResult, lbfgs_minimize
from vaelens.optim.lockstep_lbfgs import LockstepLBFGSResult, lockstep_lbfgs_minimize

__all__ = ["BFGSState", "LBFGSResult", "bfgs_init", "bfgs_minimize", "bfgs_step", "lbfgs_minimize"]
__all__ += ["LockstepLBFGSResult", "lockstep_lbfgs_minimize"]
