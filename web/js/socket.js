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
      const reconnected = this.everOpened;
      this.everOpened = true;
      this.attempt = 0;
      this.announce();
      this.onState('open', reconnected);
    };
    ws.onmessage = (e) => {
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
    ws.onclose = () => {
      if (this.ws !== ws) return;
      this.ws = null;
      this.onState('closed', false);
      if (this.stopped) return;
      // 0.5 s, 1 s, 2 s ... up to 15 s, each ±30%.
      const base = Math.min(15000, 500 * 2 ** this.attempt);
      this.attempt += 1;
      this.timer = setTimeout(() => this.connect(), base * (0.7 + Math.random() * 0.6));
    };
  }
}
