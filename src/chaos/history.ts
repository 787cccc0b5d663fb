// Owns the chaos tool's operation history: one JSON Lines record per invoke / ok / fail / info, in the shape an
// external linearizability checker (Jepsen/Knossos or Porcupine style) reads:
// {"type","process","time" (ms since the run started),"f":"submit"|"read","value":{subject,jwsHash,index?}}.
// A read's ok carries `found`: whether the subject held the verdict (a consistent read of a verdict acknowledged
// before the read was invoked must find it; `stale` on the plain read of the same moment, for comparison).
import { appendFileSync, writeFileSync } from 'node:fs';

export type OpType = 'invoke' | 'ok' | 'fail' | 'info';

export interface OpValue {
  subject: string;
  jwsHash: string;
  index?: number;
  /** ok: committed / duplicate / decided-already; fail and info: why. */
  status?: string;
  error?: string;
  /** Reads: whether the consistent read held the verdict, and whether the plain read just before it did. */
  found?: boolean;
  plainFound?: boolean;
}

export interface HistoryRecord {
  type: OpType;
  process: number;
  time: number;
  f: OpKind;
  value: OpValue;
}

export type OpKind = 'submit' | 'read';

export class History {
  readonly records: HistoryRecord[] = [];
  private pending: string[] = [];

  constructor(
    private readonly started: number,
    private readonly file: string | null,
  ) {
    if (file) writeFileSync(file, '');
  }

  add(type: OpType, process: number, value: OpValue, f: OpKind = 'submit'): HistoryRecord {
    const record: HistoryRecord = { type, process, time: Math.round((performance.now() - this.started) * 1000) / 1000, f, value };
    this.records.push(record);
    if (this.file) {
      this.pending.push(JSON.stringify(record));
      if (this.pending.length >= 64) this.flush();
    }
    return record;
  }

  flush(): void {
    if (!this.file || this.pending.length === 0) return;
    appendFileSync(this.file, this.pending.join('\n') + '\n');
    this.pending = [];
  }
}
