// One timer per tick length for the whole node: every engine with the same tick ticks in the same turn of the
// event loop, so the heartbeats of many swarms to one peer leave in one transport batch, and a node with many
// idle swarms runs one timer, not one per swarm. A quiesced Raft engine is not a listener at all (it leaves on
// quiescing and comes back when woken), so an idle node's ticks cost nothing per swarm; the timer stops when the
// last listener leaves.
interface Clock {
  timer: NodeJS.Timeout;
  listeners: Set<() => void>;
}

const clocks = new Map<number, Clock>();

/** Calls `listener` every `ms` milliseconds until the returned function is called. */
export function onTick(ms: number, listener: () => void): () => void {
  let clock = clocks.get(ms);
  if (!clock) {
    const listeners = new Set<() => void>();
    const timer = setInterval(() => {
      for (const fn of [...listeners]) fn();
    }, ms);
    timer.unref();
    clock = { timer, listeners };
    clocks.set(ms, clock);
  }
  clock.listeners.add(listener);
  return () => {
    const current = clocks.get(ms);
    if (!current) return;
    current.listeners.delete(listener);
    if (current.listeners.size === 0) {
      clearInterval(current.timer);
      clocks.delete(ms);
    }
  };
}
