/**
 * The answer panel: what the model thinks of the latest picture.
 *
 * Owns the big digit and its confidence, one labelled bar per digit, the 28x28 picture the
 * model saw (from `input_png`, drawn 1:1 on a small canvas that CSS scales up pixelated),
 * the calm "draw a digit" state for an empty canvas, a line for problems, and the
 * `aria-live` region, which announces only the digit of a finished picture ("7 (98 %)"),
 * never the ten probabilities and never the live updates under a moving pen.
 *
 * Pictures are ordered by a page-wide ticket: an answer older than the one shown is dropped,
 * whichever way (socket or HTTP) it came and however late it arrives.
 */

export class PredictionDisplay {
  /** @param {HTMLElement} root the element holding the [data-role] parts */
  constructor(root) {
    this.root = root;
    this.digit = root.querySelector("[data-role=digit]");
    this.confidence = root.querySelector("[data-role=confidence]");
    this.source = root.querySelector("[data-role=source]");
    this.problem = root.querySelector("[data-role=problem]");
    this.announcer = root.querySelector("[data-role=announcer]");
    this.seen = root.querySelector("[data-role=seen]");
    this.bars = Array.from(root.querySelectorAll("[data-role=bars] [data-digit]"));
    this.shownTicket = -1;
    this.showEmpty(-1);
  }

  /** Whether an answer for this ticket is newer than what is shown. */
  isNewer(ticket) {
    return ticket > this.shownTicket;
  }

  /** The empty canvas: no guess, no bars, an invitation. */
  showEmpty(ticket) {
    if (ticket !== -1 && !this.isNewer(ticket)) return;
    this.shownTicket = ticket;
    this.root.dataset.state = "empty";
    this.root.dataset.ticket = String(ticket);
    delete this.root.dataset.digit;
    this.digit.textContent = "";
    this.confidence.textContent = "";
    this.source.textContent = "";
    this.problem.textContent = "";
    this.announcer.textContent = "";
    this.setBars(null, null);
    this.clearSeen();
  }

  /**
   * Show an answer unless a newer one is already shown.
   * @param {number} ticket
   * @param {{digit: number|null, confidence: number|null, probabilities: number[]|null,
   *   empty: boolean, input_png?: string}} prediction
   * @param {{final: boolean, source?: string}} options
   */
  show(ticket, prediction, { final, source = "" }) {
    if (!this.isNewer(ticket)) return;
    if (prediction.empty || prediction.digit === null) {
      // Blank paper, or an upload without ink: the same calm state, saying where it came from.
      this.showEmpty(ticket);
      if (source) this.problem.textContent = `${source}: no digit found.`;
      return;
    }
    this.shownTicket = ticket;
    const percent = formatPercent(prediction.confidence);
    this.root.dataset.state = "prediction";
    this.root.dataset.ticket = String(ticket);
    this.root.dataset.digit = String(prediction.digit);
    this.digit.textContent = String(prediction.digit);
    this.confidence.textContent = `${percent} sure`;
    this.source.textContent = source;
    this.problem.textContent = "";
    this.setBars(prediction.probabilities, prediction.digit);
    if (prediction.input_png) this.drawSeen(ticket, prediction.input_png);
    // Announcing every live update would drown a screen reader; a finished picture is news.
    if (final) this.announcer.textContent = `${prediction.digit} (${percent})`;
  }

  /** A problem with a picture (an unreadable upload, the server out of reach). */
  showProblem(ticket, message, { final, source = "" }) {
    if (ticket !== null && ticket < this.shownTicket) return;
    const text = source ? `${source}: ${message}` : message;
    this.problem.textContent = text;
    if (final) this.announcer.textContent = text;
  }

  setBars(probabilities, winner) {
    for (const bar of this.bars) {
      const digit = Number(bar.dataset.digit);
      const probability = probabilities ? probabilities[digit] : 0;
      // CSSOM writes are allowed by a Content-Security-Policy that forbids style attributes.
      bar.style.setProperty("--probability", String(probability));
      bar.classList.toggle("winner", digit === winner);
      bar.querySelector("[data-role=value]").textContent = probabilities
        ? formatPercent(probability)
        : "";
    }
  }

  clearSeen() {
    const context = this.seen.getContext("2d");
    context.clearRect(0, 0, this.seen.width, this.seen.height);
    this.seen.dataset.shown = "false";
  }

  /**
   * Decode the data URL ourselves and paint it, rather than use an <img src="data:...">,
   * so the page needs no `img-src data:` in its Content-Security-Policy.
   */
  async drawSeen(ticket, dataUrl) {
    try {
      const base64 = dataUrl.slice(dataUrl.indexOf(",") + 1);
      const bytes = Uint8Array.from(atob(base64), (character) => character.charCodeAt(0));
      const bitmap = await createImageBitmap(new Blob([bytes], { type: "image/png" }));
      // A newer answer may have been shown while this one decoded.
      if (ticket !== this.shownTicket) return;
      const context = this.seen.getContext("2d");
      context.clearRect(0, 0, this.seen.width, this.seen.height);
      context.imageSmoothingEnabled = false;
      context.drawImage(bitmap, 0, 0, this.seen.width, this.seen.height);
      bitmap.close();
      this.seen.dataset.shown = "true";
    } catch {
      // A picture we cannot decode only costs the thumbnail; the answer itself stands.
    }
  }
}

function formatPercent(fraction) {
  return `${Math.round(fraction * 100)} %`;
}
