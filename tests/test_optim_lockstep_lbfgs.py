"""Lock-step batched L-BFGS: independent problems reach their exact minima."""

import jax
import jax.numpy as jnp
import numpy as np

from vaelens.optim import lbfgs_minimize, lockstep_lbfgs_minimize


def _rosenbrock(x):
    return jnp.sum(100.0 * (x[1:] - x[:-1] ** 2) ** 2 + (1.0 - x[:-1]) ** 2)


def test_batch_of_quadratics_and_rosenbrock_reach_their_minima():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(4, 6, 6))
    hess = jnp.asarray(a @ np.transpose(a, (0, 2, 1)) + 0.5 * np.eye(6))  # SPD, one per problem
    centre = jnp.asarray(rng.normal(size=(4, 6)))

    def value_and_grad(x):
        def total(x):
            d = x - centre
            f = 0.5 * jnp.einsum("bi,bij,bj->b", d, hess, d)
            return jnp.sum(f), f

        (_, f), g = jax.value_and_grad(total, has_aux=True)(x)
        return f, g

    sol = lockstep_lbfgs_minimize(value_and_grad, jnp.zeros((4, 6)), num_steps=200, gtol=1e-8)
    np.testing.assert_allclose(np.asarray(sol.x), np.asarray(centre), atol=1e-6)
    assert np.all(np.asarray(sol.converged))
    assert np.all(np.asarray(sol.num_evaluations) < 200)

    # a non-convex problem in each row, from different starts: same answer as the while-loop
    # L-BFGS, x = (1, ..., 1)
    x0 = jnp.asarray([[-1.2, 1.0, -0.5], [0.5, 0.5, 0.5]])

    def vg(x):
        f, g = jax.vmap(jax.value_and_grad(_rosenbrock))(x)
        return f, g

    sol = lockstep_lbfgs_minimize(vg, x0, num_steps=400, gtol=1e-7)
    np.testing.assert_allclose(np.asarray(sol.x), 1.0, atol=1e-5)
    for i in range(2):
        ref = lbfgs_minimize(_rosenbrock, x0[i], max_iter=400, gtol=1e-7)
        np.testing.assert_allclose(np.asarray(sol.x[i]), np.asarray(ref.x), atol=1e-5)


def test_converged_problem_stops_changing():
    def vg(x):
        return jnp.sum(x**2, axis=-1), 2.0 * x

    x0 = jnp.asarray([[0.0, 0.0], [3.0, -4.0]])  # the first starts at its minimum
    sol = lockstep_lbfgs_minimize(vg, x0, num_steps=20, gtol=1e-9)
    np.testing.assert_array_equal(np.asarray(sol.x[0]), [0.0, 0.0])
    assert int(sol.num_evaluations[0]) == 0
    np.testing.assert_allclose(np.asarray(sol.x[1]), 0.0, atol=1e-9)
