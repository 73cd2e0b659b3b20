// @ts-check
/**
 * The Decent WebSocket at `/`: events in, `pongdata` out. Reconnects after any close (also a
 * clean 1001 "going away" on a server restart) with capped exponential backoff and jitter,
 * and reports its state so the page can show it and backfill what it missed.
 */

/**
 * @typedef {'connecting' | 'open' | 'closed'} SocketState
 * @typedef {{evt: string, data: any}} DecentEvent
 */

/** Longest silence before a socket is taken for dead: the spec's longest ping interval + 5 s. */
const SILENCE_MS = 35000;

export class EventSocket {
  /**
   * @param {() => string | null} sessionId the session to announce in `pongdata`
   * @param {(event: DecentEvent) => void} onEvent
   * @param {(state: SocketState, reconnected: boolean) => void} onState
   */
  constructor(sessionId, onEvent, onState) {
    this.sessionId = sessionId;
    this.onEvent = onEvent;
    this.onState = onState;
    /** @type {WebSocket | null} */
    this.ws = null;
    this.attempt = 0;
    this.everOpened = false;
    this.stopped = false;
    /** @type {ReturnType<typeof setTimeout> | undefined} */
    this.timer = undefined;
    this.lastHeard = Date.now();
    // A dropped network can leave a socket that never closes: the server sends `pingdata` at
    // least every 30 s (spec 3.2), so silence for longer means the connection is gone.
    setInterval(() => {
      if (this.ws?.readyState === WebSocket.OPEN && Date.now() - this.lastHeard > SILENCE_MS) {
        this.ws.close(4000, 'no pingdata');
        this.dropped(this.ws);
      }
    }, 5000);
  }

  start() {
    this.stopped = false;
    this.connect();
  }

  stop() {
    this.stopped = true;
    clearTimeout(this.timer);
    this.ws?.close(1000);
    this.ws = null;
  }

  /** Sends `pongdata` now: after a login or logout, so events follow the session. */
  announce() {
    this.send({ evt: 'pongdata', data: { sessionID: this.sessionId() } });
  }

  /** @param {unknown} message */
  send(message) {
    if (this.ws?.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  connect() {
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/`;
    this.onState('connecting', false);
    const ws = new WebSocket(url);
    this.ws = ws;
    ws.onopen = () => {
      this.lastHeard = Date.now();
      const reconnected = this.everOpened;
      this.everOpened = true;
      this.attempt = 0;
      this.announce();
      this.onState('open', reconnected);
    };
    ws.onmessage = (e) => {
      this.lastHeard = Date.now();
      let event;
      try {
        event = JSON.parse(e.data);
      } catch {
        return;
      }
      if (event.evt === 'pingdata') {
        this.announce();
        return;
      }
      this.onEvent(event);
    };
    ws.onclose = () => this.dropped(ws);
  }

  /**
   * A socket ended (closed, or taken for dead): reconnect after a backoff.
   * @param {WebSocket} ws
   */
  dropped(ws) {
    if (this.ws !== ws) return;
    this.ws = null;
    this.onState('closed', false);
    if (this.stopped) return;
    // 0.5 s, 1 s, 2 s ... up to 15 s, each ±30%.
    const base = Math.min(15000, 500 * 2 ** this.attempt);
    this.attempt += 1;
    this.timer = setTimeout(() => this.connect(), base * (0.7 + Math.random() * 0.6));
  }
}
