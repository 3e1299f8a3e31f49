/**
 * The connection to the server: the WebSocket for live answers, HTTP for the rest.
 *
 * Owns the WebSocket to `/ws?include_input=1` on the page's own host (ws: or wss: as the
 * page), reconnecting with exponential backoff; the per-connection sequence numbers (every
 * text message carries an explicit `seq`, 0 for the first on each connection, then + 1);
 * `POST /api/predict` for uploads and, while the socket is not open, for the picture at each
 * pen-up, undo and clear.
 *
 * Messages and pictures carry a page-wide `ticket` chosen by the caller, because wire seqs
 * restart on every connection and HTTP answers have none; answers come back with the ticket.
 *
 * Events:
 * - "status": detail.state is "connecting", "live", "reconnecting" or "fallback"
 *   (the socket cannot connect; pen-ups are answered over HTTP);
 * - "hello": detail is the server's hello message;
 * - "open": the socket (re)connected and the server holds nothing of this page yet;
 * - "prediction": detail is {ticket, final, type, prediction, via: "socket" | "http"};
 * - "problem": detail is {ticket, final, type, code, message, via}, where `type` is the type
 *   of the message the server refused (null for HTTP, or when the server could not tell
 *   which); `rate_limited` included, which the page need not show.
 */

const SOCKET_PATH = "ws?include_input=1";
const PREDICT_PATH = "api/predict?include_input=1";
const FIRST_RETRY_MS = 500;
const LAST_RETRY_MS = 30000;

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
    /** @type {Map<number, {ticket: number, final: boolean, type: string}>} seq -> message sent */
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
        const request = this.answered(message.seq);
        if (request === null) return;
        this.dispatchEvent(
          new CustomEvent("prediction", {
            detail: { ...request, prediction: message, via: "socket" },
          }),
        );
        break;
      }
      case "error": {
        const request = this.answered(message.seq);
        this.dispatchEvent(
          new CustomEvent("problem", {
            detail: {
              ...(request ?? { ticket: null, final: false, type: null }),
              code: message.code,
              message: message.message,
              via: "socket",
            },
          }),
        );
        break;
      }
      default:
        // A newer server may say more; what this page does not know it ignores.
        break;
    }
  }

  /** The message a seq answers; older unanswered ones were skipped by the server. */
  answered(seq) {
    if (!Number.isInteger(seq)) return null;
    const request = this.unanswered.get(seq) ?? null;
    for (const pending of this.unanswered.keys()) {
      if (pending <= seq) this.unanswered.delete(pending);
    }
    return request;
  }

  /**
   * Send a message over the open socket with the connection's next seq.
   * @param {{type: string}} message without a seq
   * @param {{ticket: number, final: boolean}} request what the answer will be reported with
   * @returns {boolean} whether it went out (false: the socket is not open)
   */
  send(message, request) {
    if (!this.isOpen) return false;
    const seq = this.nextSeq;
    this.nextSeq += 1;
    this.unanswered.set(seq, { ...request, type: message.type });
    this.socket.send(JSON.stringify({ type: message.type, seq, ...message }));
    return true;
  }

  /**
   * Post a picture or a file to `/api/predict`; the answer comes as a "prediction" event.
   * @param {Blob} blob
   * @param {{ticket: number, final: boolean, source?: string}} request
   */
  async post(blob, request) {
    const picture = { ...request, type: null };
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
          detail: {
            ...picture,
            code: "unreachable",
            message: "The server cannot be reached.",
            via: "http",
          },
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
          via: "http",
        },
      }),
    );
  }
}
