/**
 * A stand-in for a seam the code under test must not use (an AWS client while only parsing
 * options, EC2 for the efs driver): every method called on it is recorded in `calls` and fails
 * (a rejected promise, as the seam's async methods would), naming the method and `why`.
 */
export function forbidden<T extends object>(why: string): T & { readonly calls: string[] } {
  const calls: string[] = [];
  return new Proxy({} as T & { readonly calls: string[] }, {
    get: (_target, prop) => {
      if (prop === 'calls') return calls;
      // Not a method: symbols (inspection) and `then` (so that awaiting the seam is no call).
      if (typeof prop !== 'string' || prop === 'then') return undefined;
      return async () => {
        calls.push(prop);
        throw new Error(`${why} (${prop})`);
      };
    },
  });
}
