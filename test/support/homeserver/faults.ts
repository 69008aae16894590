/** Which requests a fault applies to. All given fields must match. */
export interface FaultMatch {
  /** The spec's operationId, e.g. `sendMessage`, `createRoom`, `uploadContent`. */
  readonly operationId?: string;
  readonly method?: string;
  /** Tested against the request path (without query). */
  readonly path?: RegExp;
  /** Only requests made with the appservice's as_token (default true: simulated users are spared). */
  readonly fromAppservice?: boolean;
}

/** What the homeserver does instead of serving the request. */
export type FaultKind =
  | { readonly kind: 'rate_limit'; readonly retryAfterMs: number }
  | { readonly kind: 'status'; readonly status: 500 | 502 | 503 | 504 }
  /** The socket is destroyed before any response byte is written. */
  | { readonly kind: 'drop' };

interface Planned {
  remaining: number;
  readonly match: FaultMatch;
  readonly fault: FaultKind;
}

/** Faults planned by a test, consumed in order by the requests they match. */
export class FaultPlan {
  private readonly planned: Planned[] = [];

  add(count: number, fault: FaultKind, match: FaultMatch = {}): void {
    this.planned.push({ remaining: count, match, fault });
  }

  /** The fault for this request, if one is planned (and counts it down). */
  take(req: {
    operationId: string | undefined;
    method: string;
    path: string;
    fromAppservice: boolean;
  }): FaultKind | undefined {
    for (const p of this.planned) {
      if (p.remaining <= 0) continue;
      const m = p.match;
      if (m.operationId !== undefined && m.operationId !== req.operationId) continue;
      if (m.method !== undefined && m.method.toUpperCase() !== req.method) continue;
      if (m.path !== undefined && !m.path.test(req.path)) continue;
      if ((m.fromAppservice ?? true) !== req.fromAppservice) continue;
      p.remaining--;
      return p.fault;
    }
    return undefined;
  }

  /** Faults planned but not yet triggered (a test may assert the bridge reached them). */
  pending(): number {
    return this.planned.reduce((n, p) => n + p.remaining, 0);
  }

  clear(): void {
    this.planned.length = 0;
  }
}
