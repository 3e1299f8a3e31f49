/**
 * The connection to the server: the WebSocket for live answers, HTTP for the rest.
 *
 * Owns the WebSocket to `/ws?include_input=1` on the page's own host (ws: or wss: as the
 * page), reconnecting with exponential backoff; the per-connection sequence numbers (each
 * binary frame's seq is the previous one's + 1, the first is 0); `POST /api/predict` for
 * uploads and, while the socket is not open, for the picture at each pen-up.
 *
 * Pictures carry a page-wide `ticket` chosen by the caller, because wire seqs restart on
 * every connection and HTTP answers have none; answers come back with the ticket.
 *
 * Events:
 * - "status": detail.state is "connecting", "live", "reconnecting" or "fallback"
 *   (the socket cannot connect; pen-ups are answered over HTTP);
 * - "hello": detail is the server's hello message;
 * - "open": the socket (re)connected, a good moment to send the whole canvas again;
 * - "prediction": detail is {ticket, final, prediction, via: "socket" | "http"};
 * - "problem": detail is {ticket, final, code, message}.
 */

const SOCKET_PATH = "ws?include_input=1";
const PREDICT_PATH = "api/predict?include_input=1";
const FIRST_RETRY_MS = 500;
const LAST_RETRY_MS = 30000;
// Live snapshots are skipped while this much is still queued in the browser: a slow link
// should not build up a backlog of stale pictures. Pen-up pictures are always sent.
const MAX_BUFFERED_BYTES = 256 * 1024;

export class PredictionSocket extends EventTarget {
  /** @param {URL | string} base the page's URL; paths resolve against it */
  constructor(base = window.location.href) {
    super();
    const socketUrl = new URL(SOCKET_PATH, base);
    socketUrl.protocol = socketUrl.protocol === "https:" ? "wss:" : "ws:";
    this.socketUrl = socketUrl.href;
    this.predictUrl = new URL(PREDICT_PATH, base).href;
    this.socket = null;
    this.state = "connecting";
    this.attempt = 0;
    this.retryTimer = null;
    this.hello = null;
    /** @type {Map<number, {ticket: number, final: boolean}>} seq -> picture, on this connection */
    this.unanswered = new Map();
    this.nextSeq = 0;

    // Coming back online or to the tab is a good reason not to wait out the backoff.
    window.addEventListener("online", () => this.retryNow());
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") this.retryNow();
    });
  }

  get isOpen() {
    return this.socket !== null && this.socket.readyState === WebSocket.OPEN;
  }

  connect() {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    let socket;
    try {
      socket = new WebSocket(this.socketUrl);
    } catch {
      // A blocked or malformed URL throws instead of failing asynchronously.
      this.onClosed(null, false);
      return;
    }
    socket.binaryType = "arraybuffer";
    this.socket = socket;
    let opened = false;

    socket.addEventListener("open", () => {
      opened = true;
      this.attempt = 0;
      this.nextSeq = 0;
      this.unanswered.clear();
      this.setState("live");
      this.dispatchEvent(new CustomEvent("open"));
    });
    socket.addEventListener("message", (event) => this.onMessage(event));
    // "error" carries no detail by design; "close" always follows it, so all handling is there.
    socket.addEventListener("close", () => this.onClosed(socket, opened));
  }

  onClosed(socket, opened) {
    if (socket !== this.socket) return;
    this.socket = null;
    this.unanswered.clear();
    // A socket that never opened cannot connect (close code 1006): answer over HTTP. One that
    // worked and dropped is probably coming back soon.
    this.setState(opened ? "reconnecting" : "fallback");
    this.scheduleRetry();
  }

  scheduleRetry() {
    const delay = Math.min(LAST_RETRY_MS, FIRST_RETRY_MS * 2 ** this.attempt);
    this.attempt += 1;
    // Jitter, so that many pages do not come back at the same moment after a restart.
    const jittered = delay * (0.8 + 0.4 * Math.random());
    this.retryTimer = setTimeout(() => this.connect(), jittered);
  }

  retryNow() {
    if (this.socket === null && this.retryTimer !== null) this.connect();
  }

  setState(state) {
    if (state === this.state) return;
    this.state = state;
    this.dispatchEvent(new CustomEvent("status", { detail: { state } }));
  }

  onMessage(event) {
    if (typeof event.data !== "string") return;
    let message;
    try {
      message = JSON.parse(event.data);
    } catch {
      return;
    }
    switch (message.type) {
      case "hello":
        this.hello = message;
        this.dispatchEvent(new CustomEvent("hello", { detail: message }));
        break;
      case "prediction": {
        const picture = this.answered(message.seq);
        if (picture === null) return;
        this.dispatchEvent(
          new CustomEvent("prediction", {
            detail: { ...picture, prediction: message, via: "socket" },
          }),
        );
        break;
      }
      case "error": {
        const picture = this.answered(message.seq);
        // Being rate-limited needs no words: the last picture before a pause is always answered.
        if (message.code === "rate_limited") return;
        this.dispatchEvent(
          new CustomEvent("problem", {
            detail: { ...(picture ?? { ticket: null, final: false }), code: message.code, message: message.message },
          }),
        );
        break;
      }
      default:
        // A newer server may say more; what this page does not know it ignores.
        break;
    }
  }

  /** The picture a seq answers; older unanswered ones were skipped by the server. */
  answered(seq) {
    if (!Number.isInteger(seq)) return null;
    const picture = this.unanswered.get(seq) ?? null;
    for (const pending of this.unanswered.keys()) {
      if (pending <= seq) this.unanswered.delete(pending);
    }
    return picture;
  }

  /**
   * Send a picture of the canvas. Over the socket when it is open; otherwise, for a final
   * picture (pen-up, undo, clear), over HTTP; live pictures wait for the socket.
   * @param {Blob} blob
   * @param {{ticket: number, final: boolean}} picture
   */
  async submit(blob, picture) {
    if (this.isOpen) {
      // Sent as an ArrayBuffer: Chromium leaves Blob frames out of DevTools' frame log,
      // and the bytes are already in memory anyway.
      const bytes = await blob.arrayBuffer();
      if (this.isOpen) {
        if (!picture.final && this.socket.bufferedAmount > MAX_BUFFERED_BYTES) return;
        const seq = this.nextSeq;
        this.nextSeq += 1;
        this.unanswered.set(seq, picture);
        this.socket.send(bytes);
        return;
      }
    }
    if (picture.final) this.post(blob, picture);
  }

  /**
   * Post a picture or a file to `/api/predict`; the answer comes as a "prediction" event.
   * @param {Blob} blob
   * @param {{ticket: number, final: boolean}} picture
   */
  async post(blob, picture) {
    let response;
    try {
      if (blob instanceof File) {
        const form = new FormData();
        form.append("image", blob, blob.name);
        response = await fetch(this.predictUrl, { method: "POST", body: form });
      } else {
        response = await fetch(this.predictUrl, {
          method: "POST",
          body: blob,
          headers: { "Content-Type": blob.type || "image/png" },
        });
      }
    } catch {
      this.dispatchEvent(
        new CustomEvent("problem", {
          detail: { ...picture, code: "unreachable", message: "The server cannot be reached." },
        }),
      );
      return;
    }
    let body = null;
    try {
      body = await response.json();
    } catch {
      // Handled below: a proxy's HTML error page is not JSON.
    }
    if (response.ok && body !== null) {
      this.dispatchEvent(
        new CustomEvent("prediction", { detail: { ...picture, prediction: body, via: "http" } }),
      );
      return;
    }
    const error = body?.error ?? {};
    this.dispatchEvent(
      new CustomEvent("problem", {
        detail: {
          ...picture,
          code: error.code ?? `http_${response.status}`,
          message: error.message ?? `The server answered ${response.status}.`,
        },
      }),
    );
  }
}
