/**
 * The answer panel: what the model thinks of the latest picture.
 *
 * Owns the answer's four states, in `data-state` on the panel (with `data-reading`, the text
 * read, and `data-pieces`, how many characters it has):
 * - "empty": the calm invitation to draw, for blank paper;
 * - "prediction": one digit, as before numbers: the big digit, its confidence, one labelled
 *   bar per digit and the 28x28 picture the model saw (from `input_png`, drawn 1:1 on a
 *   small canvas that CSS scales up pixelated);
 * - "number": several digits (PROTOCOL.md, "The prediction object, v2": `number`), each a
 *   button with its confidence, and the number's confidence; a press on a digit shows its ten
 *   bars (`aria-pressed`), another press hides them;
 * - "rejected": the picture does not read as digits (`digit` null and a `?` in
 *   `number.text`), which the panel says in words, with the pieces as buttons when there are
 *   several.
 * Also a line for problems, and the `aria-live` region, which announces only a finished
 * picture ("7 (98 %)", "Reads 2026, 94 % sure", "This does not look like a digit"), never the
 * ten probabilities and never the live updates under a moving pen.
 *
 * Pictures are ordered by a page-wide ticket: an answer older than the one shown is dropped,
 * whichever way (socket or HTTP) it came and however late it arrives.
 *
 * Events: "pieces", detail {ticket, pieces: [{box, digit}], selected}, whenever the pieces
 * shown or the chosen one change (none for the empty state), so their boxes can be outlined
 * on the drawing.
 */

export class PredictionDisplay extends EventTarget {
  /** @param {HTMLElement} root the element holding the [data-role] parts */
  constructor(root) {
    super();
    this.root = root;
    this.digit = root.querySelector("[data-role=digit]");
    this.number = root.querySelector("[data-role=number]");
    this.confidence = root.querySelector("[data-role=confidence]");
    this.source = root.querySelector("[data-role=source]");
    this.problem = root.querySelector("[data-role=problem]");
    this.announcer = root.querySelector("[data-role=announcer]");
    this.seen = root.querySelector("[data-role=seen]");
    this.caption = root.querySelector("[data-role=bars-caption]");
    this.bars = Array.from(root.querySelectorAll("[data-role=bars] [data-digit]"));
    this.shownTicket = -1;
    /** The reading shown (see `readingOf`), null when empty. */
    this.reading = null;
    /** The index of the piece whose bars are shown, or null. */
    this.selected = null;

    // One listener for buttons that come and go with the number.
    this.number.addEventListener("click", (event) => {
      const button = event.target.closest("[data-action=show-digit]");
      if (button !== null) this.choose(Number(button.dataset.index));
    });
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
    this.reading = null;
    this.selected = null;
    this.root.dataset.state = "empty";
    this.root.dataset.ticket = String(ticket);
    delete this.root.dataset.digit;
    delete this.root.dataset.reading;
    delete this.root.dataset.pieces;
    this.digit.textContent = "";
    this.confidence.textContent = "";
    this.source.textContent = "";
    this.problem.textContent = "";
    this.announcer.textContent = "";
    this.showPieces([]);
    this.setBars(null, null, 1);
    this.caption.textContent = "";
    this.clearSeen();
    this.emitPieces();
  }

  /**
   * Show an answer unless a newer one is already shown.
   * @param {number} ticket
   * @param {{digit: number|null, confidence: number|null, probabilities: number[]|null,
   *   empty: boolean, not_digit?: number|null, number?: object|null, input_png?: string}}
   *   prediction
   * @param {{final: boolean, source?: string}} options
   */
  show(ticket, prediction, { final, source = "" }) {
    if (!this.isNewer(ticket)) return;
    if (prediction.empty) {
      // Blank paper, or an upload without ink: the same calm state, saying where it came from.
      this.showEmpty(ticket);
      if (source) this.problem.textContent = `${source}: no digit found.`;
      return;
    }
    const reading = readingOf(prediction);
    this.shownTicket = ticket;
    this.reading = reading;
    // The chosen digit stays chosen while the number grows under the pen.
    if (this.selected !== null && this.selected >= reading.pieces.length) this.selected = null;
    if (reading.kind === "prediction") this.selected = null;

    this.root.dataset.state = reading.kind;
    this.root.dataset.ticket = String(ticket);
    this.root.dataset.reading = reading.text;
    this.root.dataset.pieces = String(reading.pieces.length);
    if (reading.kind === "prediction") this.root.dataset.digit = reading.text;
    else delete this.root.dataset.digit;
    this.source.textContent = source;
    this.problem.textContent = "";

    const percent = formatPercent(reading.confidence);
    this.digit.textContent = reading.kind === "prediction" ? reading.text : "";
    this.confidence.textContent = reading.kind === "rejected" ? rejection(reading) : `${percent} sure`;
    // One digit is the big digit, and one `?` is said in words: no buttons for those.
    const single =
      reading.kind === "prediction" || (reading.kind === "rejected" && reading.pieces.length <= 1);
    this.showPieces(single ? [] : reading.pieces);
    this.showChart();
    // What the model saw is one 28x28 picture of the whole drawing: telling for one character,
    // a squeezed blur for a number.
    if (prediction.input_png && reading.pieces.length <= 1) {
      this.drawSeen(ticket, prediction.input_png);
    } else {
      this.clearSeen();
    }
    this.emitPieces();
    // Announcing every live update would drown a screen reader; a finished picture is news.
    if (final) this.announcer.textContent = announcement(reading);
  }

  /** A problem with a picture (an unreadable upload, the server out of reach). */
  showProblem(ticket, message, { final, source = "" }) {
    if (ticket !== null && ticket < this.shownTicket) return;
    const text = source ? `${source}: ${message}` : message;
    this.problem.textContent = text;
    if (final) this.announcer.textContent = text;
  }

  /** Show the ten bars of piece `index` of the shown number, or hide them if they show. */
  choose(index) {
    if (this.reading === null || index >= this.reading.pieces.length) return;
    this.selected = this.selected === index ? null : index;
    this.showPieces(this.reading.pieces);
    this.showChart();
    this.emitPieces();
  }

  /**
   * One button per piece, updated in place so that a focused button keeps its focus while
   * the answers under a moving pen come and go.
   */
  showPieces(pieces) {
    const buttons = Array.from(this.number.children);
    for (const extra of buttons.slice(pieces.length)) extra.remove();
    pieces.forEach((piece, index) => {
      const button = buttons[index] ?? this.number.appendChild(pieceButton(index));
      const character = piece.digit === null ? "?" : String(piece.digit);
      const percent = formatPercent(piece.confidence);
      button.querySelector("[data-role=character]").textContent = character;
      button.querySelector("[data-role=piece-confidence]").textContent = percent;
      button.dataset.character = character;
      button.setAttribute(
        "aria-label",
        piece.digit === null ? `not a digit, ${percent} sure` : `${character}, ${percent} sure`,
      );
      button.setAttribute("aria-pressed", String(index === this.selected));
    });
  }

  /** The bars and their caption, for the reading and the chosen piece. */
  showChart() {
    const reading = this.reading;
    if (reading.kind === "prediction") {
      this.caption.textContent = "";
      this.setBars(reading.probabilities, reading.digit, 1);
      return;
    }
    const count = reading.pieces.length;
    if (this.selected !== null) {
      const piece = reading.pieces[this.selected];
      const place = count > 1 ? `Digit ${this.selected + 1} of ${count}` : "The drawing";
      if (piece.digit === null) {
        // A piece read as `?`: its confidence is how sure the model is that it is not a
        // digit, and its ten probabilities are shares of what is left (see below).
        this.caption.textContent =
          `${place} does not look like a digit (${formatPercent(piece.confidence)}); ` +
          "each bar is the chance of that digit.";
        this.setBars(piece.probabilities, null, 1 - piece.confidence);
      } else {
        this.caption.textContent = `${place}, read as ${piece.digit}: the chance of each digit.`;
        this.setBars(piece.probabilities, piece.digit, 1);
      }
      return;
    }
    if (reading.kind === "rejected" && isNoDigit(reading)) {
      // Rejected: `probabilities` still sum to 1 over the ten digits, so drawn as they are
      // one of them would stand at (nearly) 100 % beside "not a digit". Scaled by
      // 1 - not_digit, each bar is the model's own chance that the picture is that digit,
      // and all ten together are what is left once "not a digit" has its share: small bars
      // for a letter, and never one at 100 %.
      const notDigit = reading.notDigit ?? 1;
      this.caption.textContent =
        `Not a digit: ${formatPercent(notDigit)}. Each bar is the chance of that digit.`;
      this.setBars(reading.probabilities, null, 1 - notDigit);
      return;
    }
    this.caption.textContent = "Choose a digit above to see its ten bars.";
    this.setBars(null, null, 1);
  }

  /**
   * @param {number[] | null} probabilities
   * @param {number | null} winner the digit to highlight, if any
   * @param {number} scale what the probabilities are multiplied by before they are shown
   */
  setBars(probabilities, winner, scale) {
    for (const bar of this.bars) {
      const digit = Number(bar.dataset.digit);
      const probability = probabilities ? probabilities[digit] * Math.max(0, scale) : 0;
      // CSSOM writes are allowed by a Content-Security-Policy that forbids style attributes.
      bar.style.setProperty("--probability", String(probability));
      bar.classList.toggle("winner", digit === winner);
      bar.querySelector("[data-role=value]").textContent = probabilities
        ? formatPercent(probability)
        : "";
    }
  }

  emitPieces() {
    const pieces = this.reading === null ? [] : this.reading.pieces;
    const detail = {
      ticket: this.shownTicket,
      pieces: pieces.map((piece) => ({ box: piece.box, digit: piece.digit })),
      selected: this.selected,
    };
    this.dispatchEvent(new CustomEvent("pieces", { detail }));
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

/**
 * What a (non-empty) prediction says, whichever server answered:
 * `{kind, text, digit, confidence, probabilities, notDigit, pieces}`, where `kind` is
 * "prediction" (one digit), "number" or "rejected" (a `?` somewhere), and `pieces` are
 * `number.digits` (none from a server without numbers).
 */
export function readingOf(prediction) {
  const number = prediction.number ?? null;
  const pieces = Array.isArray(number?.digits) ? number.digits : [];
  const common = {
    digit: prediction.digit ?? null,
    probabilities: prediction.probabilities,
    notDigit: prediction.not_digit ?? null,
    pieces,
  };
  if (prediction.digit !== null && prediction.digit !== undefined) {
    return {
      ...common,
      kind: "prediction",
      text: String(prediction.digit),
      confidence: prediction.confidence,
    };
  }
  // Rejected as one digit: the number says what the drawing is, `?` where it is no digit.
  const text = typeof number?.text === "string" && number.text !== "" ? number.text : "?";
  const kind = text.includes("?") ? "rejected" : "number";
  const confidence = number?.confidence ?? prediction.not_digit ?? 0;
  return { ...common, kind, text, confidence };
}

function pieceButton(index) {
  const button = document.createElement("button");
  button.type = "button";
  button.className = "piece";
  button.dataset.action = "show-digit";
  button.dataset.index = String(index);
  const character = document.createElement("span");
  character.className = "character";
  character.dataset.role = "character";
  const confidence = document.createElement("span");
  confidence.className = "piece-confidence";
  confidence.dataset.role = "piece-confidence";
  button.append(character, confidence);
  return button;
}

/** Whether no character of the reading is a digit ("?", "??"). */
function isNoDigit(reading) {
  return /^\?+$/.test(reading.text);
}

/** The plain words for a rejected reading. */
function rejection(reading) {
  return isNoDigit(reading)
    ? "This does not look like a digit"
    : "Part of this does not look like a digit";
}

/** What the `aria-live` region says of a finished picture. */
function announcement(reading) {
  const percent = formatPercent(reading.confidence);
  switch (reading.kind) {
    case "prediction":
      return `${reading.text} (${percent})`;
    case "number":
      return `Reads ${reading.text}, ${percent} sure`;
    default:
      return isNoDigit(reading)
        ? "This does not look like a digit"
        : `Reads ${reading.text}: part of it does not look like a digit`;
  }
}

function formatPercent(fraction) {
  return `${Math.round(fraction * 100)} %`;
}
