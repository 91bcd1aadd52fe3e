/**
 * What every simulated WebSocket client shares (SimClient: connecting,
 * counting, parsing and sending, heartbeats) and the records the simulated
 * encoders and viewers keep (SimContent, Holding, RunningJob).
 */
import WebSocket from 'ws';
import { parseServerMessage, type ClientMessage, type Job, type ServerMessage } from '../../../src/shared/protocol.ts';
import type { ShardMap } from '../../../src/shared/shardMap.ts';
import type { Churn } from './sim.ts';
import { bump, pushExample } from './util.ts';

export interface SimContent {
  id: string;
  fixture: string;
  map: ShardMap;
  starts: number[];
  duration: number;
  /** Video renditions, best first. */
  video: string[];
  audio: string | undefined;
  weight: number;
}

export type Msg<T extends ServerMessage['type']> = Extract<ServerMessage, { type: T }>;

/** What one WebSocket client shares: counting, parsing and sending. */
export abstract class SimClient {
  ws: WebSocket | undefined;
  peerId = '';
  resume = '';
  welcomed = false;
  protected heartbeatTimer: NodeJS.Timeout | undefined;

  constructor(protected readonly sim: Churn) {}

  connect(hello: Omit<Extract<ClientMessage, { type: 'hello' }>, 'type' | 'protocol'>): void {
    const ws = new WebSocket(`${this.sim.url.replace(/^http/, 'ws')}/ws`, { perMessageDeflate: false });
    this.ws = ws;
    ws.on('open', () => this.send({ type: 'hello', protocol: 1, ...hello }));
    ws.on('message', (data) => {
      const raw = (data as Buffer).toString('utf8');
      let msg: ServerMessage;
      if (this.sim.o.validate) {
        const r = parseServerMessage(raw);
        if (!r.ok) {
          this.sim.r.protocol.invalidServerMessages++;
          pushExample(this.sim.r.protocol.invalidExamples, `${r.message}: ${raw}`);
          return;
        }
        msg = r.msg;
      } else {
        msg = JSON.parse(raw) as ServerMessage;
      }
      this.sim.r.server.messagesOut++;
      bump(this.sim.r.server.byType, `out:${msg.type}`);
      if (msg.type === 'welcome') {
        this.peerId = msg.peerId;
        this.resume = msg.resume;
        this.welcomed = true;
      } else if (msg.type === 'error') {
        bump(this.sim.r.protocol.errors, `${msg.ref ?? '?'}:${msg.code}`);
        pushExample(
          this.sim.r.protocol.errorExamples,
          `${this.constructor.name} ${this.peerId}: ${msg.ref ?? '?'}: ${msg.code}: ${msg.message}${this.explain(msg.message)}`,
        );
      }
      this.onMessage(msg);
    });
    ws.on('close', (code, reason) => {
      clearInterval(this.heartbeatTimer);
      this.onClose(code, reason.toString());
    });
    ws.on('error', () => {});
  }

  send(msg: ClientMessage): void {
    if (this.ws?.readyState !== WebSocket.OPEN) return;
    this.ws.send(JSON.stringify(msg));
    this.lastSent = Date.now();
    this.sim.r.server.messagesIn++;
    bump(this.sim.r.server.byType, `in:${msg.type}`);
  }

  protected startHeartbeat(periodMs: number, body: () => Omit<Extract<ClientMessage, { type: 'heartbeat' }>, 'type'>): void {
    clearInterval(this.heartbeatTimer);
    // Tabs join at random moments: spread the first beat so they do not tick in lockstep.
    const first = setTimeout(() => {
      this.beat(body);
      this.heartbeatTimer = setInterval(() => this.beat(body), periodMs);
    }, this.sim.rand() * periodMs);
    this.heartbeatTimer = first;
  }

  private beat(body: () => Omit<Extract<ClientMessage, { type: 'heartbeat' }>, 'type'>): void {
    this.send({ type: 'heartbeat', ...body() });
  }

  /** Any message refreshes the server's view of a peer, so its timeout runs from the last one sent. */
  lastSent = 0;

  /** Context the simulation knows for an error reply. */
  explain(_message: string): string {
    return '';
  }

  abstract onMessage(msg: ServerMessage): void;
  abstract onClose(code: number, reason: string): void;
}

export interface Holding {
  sha: string;
  size: number;
  /** How the tab came to hold it, for the report's examples. */
  via: 'encode' | 'replica' | 'rejoin';
}

export interface RunningJob {
  job: Job;
  cancelled: boolean;
  timers: NodeJS.Timeout[];
  /** Ends the simulated encode early (cancel, departure). */
  wake: (() => void) | undefined;
  verdicts: Map<string, (ok: boolean) => void>;
  accepted: Set<number>;
}
