/**
 * Corrections: "it was a 4", from the person who saw a wrong answer (PROTOCOL.md,
 * "Corrections (v2)").
 *
 * Owns
 * - `CorrectionQueue`: `POST /api/corrections`, and the corrections that wait in the page
 *   (localStorage, at most `MAX_WAITING`, oldest first) while the server cannot be reached.
 *   A network failure, 408, 429 (after its Retry-After) and 5xx keep a correction for later;
 *   any other 4xx drops it, since the same body would be refused again. Waiting corrections go
 *   out on `flush()`: at start, on the `online` event, when the socket (re)connects (the page
 *   calls it) and after a Retry-After. A Web Lock keeps two tabs from sending the same one.
 *   Events: "sent" (detail {id}) when a waiting correction has been stored, "dropped"
 *   (detail {id, message}) when the server refused one.
 * - `CorrectionPanel`: the "Wrong?" control under an answer. Its buttons are found by
 *   `data-action`: `wrong` opens it, `correct-as` (with `data-label`: a digit or "not_digit")
 *   sends that label, the form sends the typed number (digits only, up to 32), `cancel` and
 *   Escape close it and give focus back to "Wrong?". The status line (`role="status"`) says
 *   "Thanks", that the correction waits, or why it was refused. What it offers follows the
 *   answer (`data-answer` on the control): for a number, the field for the typed number (the
 *   label is its digits) has the focus when the control opens; under "this does not look
 *   like a digit" (no digit read at all) there is no "Not a digit" to choose, since that is
 *   what the page said.
 *
 * A correction carries the drawing's ink as the wire carries it, or the uploaded picture as
 * a data URL, with the answer the person saw (without its `input_png`) and the model version.
 */

const CORRECTIONS_PATH = "api/corrections";
const MODEL_PATH = "api/model";
const STORAGE_KEY = "digits.corrections.waiting";
const LOCK_NAME = "digits.corrections";
// Enough for a bus ride without the network; an eleventh hour's worth is not worth a quota.
const MAX_WAITING = 20;
const MAX_NUMBER_DIGITS = 32;
const REQUEST_TIMEOUT_MS = 15000;
// When a 5xx says nothing of when to come back.
const RETRY_LATER_MS = 30000;
const MAX_RETRY_AFTER_MS = 10 * 60 * 1000;
// Why a correction waits, and until when.
const WAITING_TEXT = {
  offline: ["You are offline", "when you are back online"],
  unreachable: ["The server cannot be reached", "later"],
  busy: ["The server is busy", "in a moment"],
  unavailable: ["The server is unavailable", "later"],
};
// The parts of a prediction that say what the person saw; `input_png` is the server's own.
const ANSWER_KEYS = ["digit", "confidence", "probabilities", "empty", "not_digit", "number"];
// The parts of each piece of a number kept; its ten probabilities would make a long number's
// answer larger than the server takes (4 kB).
const PIECE_KEYS = ["digit", "confidence", "box"];

/** Corrections on their way to the server, and those that wait for it. */
export class CorrectionQueue extends EventTarget {
  /** @param {URL | string} base the page's URL; paths resolve against it */
  constructor(base = window.location.href) {
    super();
    this.url = new URL(CORRECTIONS_PATH, base).href;
    this.modelUrl = new URL(MODEL_PATH, base).href;
    this.waiting = new WaitingRoom();
    this.flushing = null;
    this.flushAgain = false;
    this.retryTimer = null;
    this.modelVersion = null;
    window.addEventListener("online", () => this.flush());
  }

  /** How many corrections wait in this page (and its stored queue). */
  get size() {
    return this.waiting.list().length;
  }

  /**
   * Send a correction now; if the server cannot take it yet, keep it for later.
   * @param {object} body the JSON body of `POST /api/corrections`
   * @returns {Promise<{kind: "stored" | "waiting" | "refused", id?: string, reason?: string,
   *   message?: string}>} for "waiting", `id` names it in the "sent" event to come
   */
  async submit(body) {
    // The id goes with every try as the Idempotency-Key: if an answer is lost on the way
    // back, the retry is stored once.
    const id = newId();
    const outcome = navigator.onLine === false ? unreachable() : await this.post(body, id);
    if (outcome.kind === "stored") {
      // The server is reachable again: a good moment for the ones that waited.
      this.flush();
      return outcome;
    }
    if (outcome.kind === "refused") return outcome;
    this.waiting.add(id, body);
    this.retryAfter(outcome.retryMs);
    return { kind: "waiting", id, reason: outcome.reason };
  }

  /** Send the waiting corrections, oldest first, until one has to wait again. */
  flush() {
    if (this.flushing !== null) {
      // A flush is under way; it may have read the queue before the newest arrived.
      this.flushAgain = true;
      return this.flushing;
    }
    this.flushing = withLock(() => this.sendWaiting()).finally(() => {
      this.flushing = null;
      if (this.flushAgain) {
        this.flushAgain = false;
        this.flush();
      }
    });
    return this.flushing;
  }

  async sendWaiting() {
    for (;;) {
      // Read afresh every time: another tab may have sent some under the same lock.
      const [entry] = this.waiting.list();
      if (entry === undefined || navigator.onLine === false) return;
      const outcome = await this.post(entry.body, entry.id);
      if (outcome.kind === "waiting") {
        this.retryAfter(outcome.retryMs);
        return;
      }
      this.waiting.remove(entry.id);
      const type = outcome.kind === "stored" ? "sent" : "dropped";
      const detail = { id: entry.id, message: outcome.message };
      this.dispatchEvent(new CustomEvent(type, { detail }));
    }
  }

  retryAfter(delayMs) {
    if (delayMs === undefined) return;
    clearTimeout(this.retryTimer);
    this.retryTimer = setTimeout(() => this.flush(), delayMs);
  }

  /** One `POST /api/corrections`, sorted into stored, waiting (for later) or refused. */
  async post(body, key) {
    let response;
    try {
      response = await fetch(this.url, {
        method: "POST",
        headers: { "Content-Type": "application/json", "Idempotency-Key": key },
        body: JSON.stringify(body),
        signal: timeoutSignal(REQUEST_TIMEOUT_MS),
      });
    } catch {
      return unreachable();
    }
    const answer = await response.json().catch(() => null);
    if (response.ok) return { kind: "stored", id: answer?.id };
    const status = response.status;
    if (status === 429 || status === 408) {
      const retryMs = retryAfterMs(response) ?? RETRY_LATER_MS;
      return { kind: "waiting", reason: "busy", retryMs };
    }
    if (status >= 400 && status < 500) {
      const message = answer?.error?.message ?? `The server answered ${status}.`;
      return { kind: "refused", code: answer?.error?.code ?? `http_${status}`, message };
    }
    const retryMs = retryAfterMs(response) ?? RETRY_LATER_MS;
    return { kind: "waiting", reason: "unavailable", retryMs };
  }

  /** The model's version from `GET /api/model`, for a page that has had no hello. */
  async fetchModelVersion() {
    if (this.modelVersion !== null) return this.modelVersion;
    try {
      const response = await fetch(this.modelUrl, { signal: timeoutSignal(REQUEST_TIMEOUT_MS) });
      if (response.ok) this.modelVersion = (await response.json()).version ?? null;
    } catch {
      // Offline: the correction goes without a version rather than not at all.
    }
    return this.modelVersion;
  }
}

/**
 * The corrections that wait, in localStorage so that they survive a reload; in the page's
 * memory when storage is forbidden (some private modes) or too full for one (a big picture).
 */
class WaitingRoom {
  constructor() {
    this.memory = [];
  }

  /** @returns {{id: string, body: object}[]} oldest first */
  list() {
    return [...this.read(), ...this.memory];
  }

  add(id, body) {
    const entry = { id, body };
    if (!this.write([...this.read(), entry].slice(-MAX_WAITING))) {
      this.memory = [...this.memory, entry].slice(-MAX_WAITING);
    }
    return entry.id;
  }

  remove(id) {
    const stored = this.read();
    if (stored.some((entry) => entry.id === id)) {
      this.write(stored.filter((entry) => entry.id !== id));
    }
    this.memory = this.memory.filter((entry) => entry.id !== id);
  }

  read() {
    try {
      const entries = JSON.parse(window.localStorage.getItem(STORAGE_KEY) ?? "[]");
      return Array.isArray(entries) ? entries.filter(isEntry) : [];
    } catch {
      return [];
    }
  }

  write(entries) {
    try {
      if (entries.length === 0) window.localStorage.removeItem(STORAGE_KEY);
      else window.localStorage.setItem(STORAGE_KEY, JSON.stringify(entries));
      return true;
    } catch {
      return false;
    }
  }
}

/** The "Wrong?" control under an answer. */
export class CorrectionPanel {
  /**
   * @param {HTMLElement} root the element holding the [data-action] and [data-role] parts
   * @param {CorrectionQueue} queue
   */
  constructor(root, queue) {
    this.root = root;
    this.queue = queue;
    this.toggle = root.querySelector("[data-action=wrong]");
    this.form = root.querySelector("[data-role=correction-form]");
    this.number = root.querySelector("[data-role=correction-number]");
    this.notDigit = root.querySelector("[data-action=correct-as][data-label=not_digit]");
    this.status = root.querySelector("[data-role=correction-status]");
    /** What the person would correct: {answer, modelVersion, ink} or {..., file}. */
    this.subject = null;
    // Set once the person has chosen, until the drawing or picture changes.
    this.chosen = false;
    // The waiting correction the status line speaks of.
    this.waitingId = null;

    this.toggle.addEventListener("click", () => (this.isOpen ? this.close() : this.open()));
    for (const button of root.querySelectorAll("[data-action=correct-as]")) {
      button.addEventListener("click", () => this.choose(button.dataset.label));
    }
    root.querySelector("[data-action=cancel]").addEventListener("click", () => this.close());
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.chooseNumber();
    });
    this.number.addEventListener("input", () => {
      // `inputmode="numeric"` only suggests a keypad; pasted or typed letters are dropped here.
      const digits = this.number.value.replace(/\D/g, "").slice(0, MAX_NUMBER_DIGITS);
      if (digits !== this.number.value) this.number.value = digits;
      this.number.removeAttribute("aria-invalid");
    });
    root.addEventListener("keydown", (event) => this.onKeyDown(event));
    queue.addEventListener("sent", (event) => {
      if (event.detail.id !== this.waitingId) return;
      this.waitingId = null;
      this.say("stored", "Your correction has been sent. Thank you!");
    });
    queue.addEventListener("dropped", (event) => {
      if (event.detail.id !== this.waitingId) return;
      this.waitingId = null;
      this.say("refused", `Your correction was not accepted: ${event.detail.message}`);
    });
  }

  get isOpen() {
    return !this.form.hidden;
  }

  /**
   * A finished answer is shown: offer to correct it.
   * @param {{answer: object, modelVersion: string | null, ink?: object, file?: File}} subject
   */
  offer(subject) {
    // The same drawing answered again (after a reconnect) is not corrected twice.
    if (this.chosen) return;
    this.subject = { ...subject, answer: compactAnswer(subject.answer) };
    const kind = answerKind(subject.answer);
    this.root.dataset.answer = kind;
    this.notDigit.hidden = kind === "rejected";
    this.close({ focus: false });
    this.toggle.hidden = false;
    this.say("", "");
    this.root.hidden = false;
  }

  /** The drawing or picture changed: the answer it would correct is gone. */
  withdraw() {
    this.subject = null;
    this.chosen = false;
    this.waitingId = null;
    if (this.root.contains(document.activeElement)) document.activeElement.blur();
    this.close({ focus: false });
    this.say("", "");
    this.root.hidden = true;
  }

  open() {
    if (this.subject === null) return;
    this.form.hidden = false;
    this.toggle.setAttribute("aria-expanded", "true");
    this.number.value = "";
    this.number.removeAttribute("aria-invalid");
    this.say("", "");
    // A number is corrected by typing it; one digit, or what was no digit, by a button.
    const kind = this.root.dataset.answer;
    if (kind === "number" || kind === "partly") this.number.focus();
    else this.form.querySelector("button").focus();
  }

  close({ focus = true } = {}) {
    const wasOpen = this.isOpen;
    this.form.hidden = true;
    this.toggle.setAttribute("aria-expanded", "false");
    if (focus && wasOpen && !this.toggle.hidden) this.toggle.focus();
  }

  onKeyDown(event) {
    if (event.key === "Escape" && this.isOpen) {
      // Handled here, the document's Escape (clear the drawing) does not run.
      event.preventDefault();
      this.close();
      return;
    }
    const command = event.ctrlKey || event.metaKey;
    if (event.target === this.number && command && event.key.toLowerCase() === "z") {
      // In the number field Ctrl+Z undoes typing, not the drawing's last stroke.
      event.stopPropagation();
    }
  }

  chooseNumber() {
    const text = this.number.value;
    if (!/^\d+$/.test(text)) {
      this.number.setAttribute("aria-invalid", "true");
      this.say("refused", "Type the number with digits only, or tap a digit.");
      this.number.focus();
      return;
    }
    this.choose(text);
  }

  async choose(label) {
    const subject = this.subject;
    if (subject === null || this.chosen) return;
    this.chosen = true;
    this.close({ focus: false });
    this.toggle.hidden = true;
    this.say("sending", "Sending your correction…");
    // The toggle is gone; the status line keeps a keyboard user's place.
    this.status.focus();

    let outcome;
    try {
      outcome = await this.queue.submit(await correctionBody(subject, label, this.queue));
    } catch {
      outcome = { kind: "refused", message: "The picture could not be read." };
    }
    // The person drew on or uploaded another picture meanwhile: that is the news now.
    if (this.subject !== subject) return;
    switch (outcome.kind) {
      case "stored":
        this.say("stored", `Thank you! Saved as ${describe(label)}.`);
        break;
      case "waiting":
        this.waitingId = outcome.id;
        const [why, when] = WAITING_TEXT[outcome.reason];
        this.say("waiting", `${why}: your correction (${describe(label)}) will be sent ${when}.`);
        break;
      default:
        this.chosen = false;
        this.toggle.hidden = false;
        this.say("refused", `Your correction was not accepted: ${outcome.message}`);
        break;
    }
  }

  say(state, text) {
    this.status.dataset.state = state;
    this.status.textContent = text;
  }
}

/** The JSON body of `POST /api/corrections` for this subject and label. */
async function correctionBody(subject, label, queue) {
  const body = { label };
  if (subject.file) body.image = await readAsDataUrl(subject.file);
  else body.ink = subject.ink;
  body.answer = subject.answer;
  const version = subject.modelVersion ?? (await queue.fetchModelVersion());
  if (version !== null) body.model_version = version;
  return body;
}

/**
 * "digit", "number", "partly" (a number with a `?` among its digits) or "rejected" (no digit
 * read at all: "?", "??").
 */
function answerKind(prediction) {
  if (prediction.digit !== null && prediction.digit !== undefined) return "digit";
  const text = prediction.number?.text || "?";
  if (/^\?+$/.test(text)) return "rejected";
  return text.includes("?") ? "partly" : "number";
}

function describe(label) {
  return label === "not_digit" ? "not a digit" : `“${label}”`;
}

/** No answer at all: the browser knows it is offline, or the server is out of reach. */
function unreachable() {
  if (navigator.onLine === false) return { kind: "waiting", reason: "offline" };
  return { kind: "waiting", reason: "unreachable", retryMs: RETRY_LATER_MS };
}

/** The prediction the person saw, small: no picture, and only the gist of a number's pieces. */
function compactAnswer(prediction) {
  const answer = pick(prediction, ANSWER_KEYS);
  const number = answer.number;
  if (number && Array.isArray(number.digits)) {
    answer.number = { ...number, digits: number.digits.map((piece) => pick(piece, PIECE_KEYS)) };
  }
  return answer;
}

function pick(object, keys) {
  return Object.fromEntries(keys.filter((key) => key in object).map((key) => [key, object[key]]));
}

function isEntry(entry) {
  return typeof entry?.id === "string" && typeof entry.body === "object" && entry.body !== null;
}

function newId() {
  // crypto.randomUUID needs a secure context (a page served over plain http on a LAN has
  // none), crypto.getRandomValues does not. The server takes 1-64 of [A-Za-z0-9_-].
  const random = new Uint32Array(4);
  crypto.getRandomValues(random);
  return [Date.now(), ...random].map((part) => part.toString(36)).join("-");
}

/** Retry-After in milliseconds (seconds or an HTTP date), within reason; undefined if none. */
function retryAfterMs(response) {
  const value = response.headers.get("Retry-After");
  if (value === null) return undefined;
  const trimmed = value.trim();
  const seconds = /^\d+$/.test(trimmed)
    ? Number(trimmed)
    : (Date.parse(trimmed) - Date.now()) / 1000;
  if (!Number.isFinite(seconds)) return undefined;
  return Math.min(MAX_RETRY_AFTER_MS, Math.max(1000, seconds * 1000));
}

function timeoutSignal(ms) {
  // AbortSignal.timeout is newer than fetch (Safari 16); without it a request waits as long.
  return typeof AbortSignal.timeout === "function" ? AbortSignal.timeout(ms) : undefined;
}

/** Several tabs share the stored queue; the lock lets one send at a time. */
function withLock(work) {
  if (navigator.locks?.request) return navigator.locks.request(LOCK_NAME, work);
  return work();
}

function readAsDataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.addEventListener("load", () => resolve(reader.result));
    reader.addEventListener("error", () => reject(reader.error));
    reader.readAsDataURL(file);
  });
}
