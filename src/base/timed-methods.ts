/**
 * What a timed call reports: the method's name, how long its promise took to settle, the error it
 * failed with (undefined on success), and the arguments it was called with.
 */
export type CallObserver = (
  method: string,
  seconds: number,
  error: unknown,
  args: readonly unknown[],
) => void;

/**
 * A view of `target` whose async methods (all of them, or those named in `only`) report each call
 * to `observe`. Everything else passes through untouched: properties, optional methods that are
 * absent, and the values methods return (a cached array stays the same array). Methods run with
 * `target` as `this`, so classes with private fields keep working. Used to time the seams (the
 * store, the mounter, the drivers) for metrics without a line of timing code inside them.
 */
export function timeMethods<T extends object>(
  target: T,
  observe: CallObserver,
  only?: ReadonlySet<string>,
): T {
  // One wrapper per method, made again if the method on the target is replaced.
  const bound = new Map<PropertyKey, { method: unknown; fn: unknown }>();
  return new Proxy(target, {
    get(t, key) {
      const value: unknown = Reflect.get(t, key, t);
      if (typeof value !== 'function') return value;
      const known = bound.get(key);
      if (known?.method === value) return known.fn;
      const method = value as (...args: unknown[]) => unknown;
      const timed = typeof key === 'string' && (!only || only.has(key));
      const fn = timed
        ? (...args: unknown[]) => timeCall(key, args, () => method.apply(t, args), observe)
        : method.bind(t);
      bound.set(key, { method, fn });
      return fn;
    },
  });
}

function timeCall(
  method: string,
  args: readonly unknown[],
  call: () => unknown,
  observe: CallObserver,
): unknown {
  const start = performance.now();
  const seconds = () => (performance.now() - start) / 1000;
  const result = call();
  if (!(result instanceof Promise)) return result; // a synchronous method is not a wait: not timed
  return result.then(
    (value) => {
      observe(method, seconds(), undefined, args);
      return value;
    },
    (err: unknown) => {
      observe(method, seconds(), err, args);
      throw err;
    },
  );
}
