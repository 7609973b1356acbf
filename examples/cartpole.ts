/**
 * CartPole in jnp: gymnasium's CartPole-v1 equations (Euler, force ±10,
 * tau 0.02, masses 1.0 and 0.1, half pole length 0.5), float32, batched: a
 * state is `[n, 4]` (x, x_dot, theta, theta_dot), one row per environment.
 * Used by examples/dqn-cartpole.ts; test/examples/cartpole.test.ts checks it
 * against gymnasium itself.
 *
 * - `step` moves every environment one step and says which terminated
 *   (the pole past 12 degrees or the cart past 2.4); the reward is 1 on
 *   every step, the terminating one included. The time limit is the
 *   caller's (gymnasium's TimeLimit wrapper).
 * - `reset` draws fresh states, uniform in (-0.05, 0.05).
 */
import { jnp, random, type Tracer } from "../src/index.js";

export const GRAVITY = 9.8;
export const MASS_CART = 1.0;
export const MASS_POLE = 0.1;
export const TOTAL_MASS = MASS_POLE + MASS_CART;
export const LENGTH = 0.5;
export const POLE_MASS_LENGTH = MASS_POLE * LENGTH;
export const FORCE_MAG = 10.0;
export const TAU = 0.02;
export const THETA_THRESHOLD = (12 * 2 * Math.PI) / 360;
export const X_THRESHOLD = 2.4;
export const OBS_SIZE = 4;
export const NUM_ACTIONS = 2;

/** `n` fresh states, uniform in (-0.05, 0.05): float32 `[n, 4]`. */
export function reset(key: Tracer, n: number): Tracer {
  return random.uniform(key, [n, OBS_SIZE], { dtype: "float32", minval: -0.05, maxval: 0.05 });
}

/**
 * One Euler step of every environment: `state` float32 `[n, 4]`, `action`
 * int32 `[n]` (0 pushes left, 1 right). Returns the next states, the rewards
 * (float32 ones) and which environments terminated (bool).
 */
export function step(state: Tracer, action: Tracer): { next: Tracer; reward: Tracer; terminated: Tracer } {
  const [x, xDot, theta, thetaDot] = jnp.unstack(state, 1) as [Tracer, Tracer, Tracer, Tracer];
  const force = jnp.where(jnp.equal(action, 1), jnp.asarray(FORCE_MAG, "float32"), jnp.asarray(-FORCE_MAG, "float32"));
  const cos = jnp.cos(theta);
  const sin = jnp.sin(theta);
  const temp = jnp.divide(jnp.add(force, jnp.multiply(jnp.multiply(POLE_MASS_LENGTH, jnp.square(thetaDot)), sin)), TOTAL_MASS);
  const thetaAcc = jnp.divide(
    jnp.subtract(jnp.multiply(GRAVITY, sin), jnp.multiply(cos, temp)),
    jnp.multiply(LENGTH, jnp.subtract(4.0 / 3.0, jnp.divide(jnp.multiply(MASS_POLE, jnp.square(cos)), TOTAL_MASS))),
  );
  const xAcc = jnp.subtract(temp, jnp.divide(jnp.multiply(jnp.multiply(POLE_MASS_LENGTH, thetaAcc), cos), TOTAL_MASS));
  const x2 = jnp.add(x, jnp.multiply(TAU, xDot));
  const xDot2 = jnp.add(xDot, jnp.multiply(TAU, xAcc));
  const theta2 = jnp.add(theta, jnp.multiply(TAU, thetaDot));
  const thetaDot2 = jnp.add(thetaDot, jnp.multiply(TAU, thetaAcc));
  // gymnasium compares its float64 state with the float64 thresholds; both round *up* to
  // float32 (f32(2.4) = 2.4000001), so for a float32 v, "v > 2.4" in float64 is "v >= f32(2.4)".
  const xThr = jnp.asarray(X_THRESHOLD, "float32");
  const thThr = jnp.asarray(THETA_THRESHOLD, "float32");
  const terminated = jnp.logicalOr(
    jnp.logicalOr(jnp.lessEqual(x2, jnp.negative(xThr)), jnp.greaterEqual(x2, xThr)),
    jnp.logicalOr(jnp.lessEqual(theta2, jnp.negative(thThr)), jnp.greaterEqual(theta2, thThr)),
  );
  return { next: jnp.stack([x2, xDot2, theta2, thetaDot2], 1), reward: jnp.onesLike(x2), terminated };
}
