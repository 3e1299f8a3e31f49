/**
 * Wires the page together: the drawing pad, the connection, the answer panel, the outlines of
 * the pieces read on the pad, and the "Wrong?" control that corrects an answer.
 *
 * Owns the page-wide tickets that order answers; how an edit reaches the server (ink messages
 * while the socket is open, the whole drawing once after each (re)connect or a refusal, a PNG
 * over HTTP at pen-up, undo and clear while the socket is down); the buttons (found by
 * `data-action`: undo, clear, save-strokes), the document-level keys (Escape clears,
 * Ctrl/Cmd+Z undoes, whatever has focus), the file input and drag-and-drop uploads, and the
 * connection status line; which answers can be corrected (the shown, finished answer to the
 * latest drawing or upload) and what a correction of one carries (the ink, or the file);
 * which pieces are outlined on the pad (those of the answer to the drawing, never an
 * upload's, whose boxes are in the uploaded picture's pixels).
 */

import { DrawingPad } from "./canvas.js";
import { CorrectionPanel, CorrectionQueue } from "./corrections.js";
import { PredictionDisplay } from "./display.js";
import { InkSync } from "./ink.js";
import { PieceOverlay } from "./overlay.js";
import { PredictionSocket } from "./socket.js";

const STATUS_TEXT = {
  connecting: "Connecting…",
  live: "Live",
  reconnecting: "Reconnecting…",
  fallback: "Offline: answers after each stroke",
};
// After the server refuses a message, wait this long before sending the whole drawing again.
const RESYNC_MS = 100;

function start() {
  const pad = new DrawingPad(document.querySelector("[data-role=pad]"));
  const display = new PredictionDisplay(document.querySelector("[data-role=answer]"));
  const overlay = new PieceOverlay(document.querySelector("[data-role=pieces]"));
  const socket = new PredictionSocket();
  const corrections = new CorrectionQueue();
  const correction = new CorrectionPanel(
    document.querySelector("[data-role=correction]"),
    corrections,
  );
  const status = document.querySelector("[data-role=status]");
  const modelLine = document.querySelector("[data-role=model]");
  const fileInput = document.querySelector("[data-role=upload]");
  const buttons = {
    undo: document.querySelector("[data-action=undo]"),
    clear: document.querySelector("[data-action=clear]"),
    save: document.querySelector("[data-action=save-strokes]"),
  };

  // Every message and picture, drawn or uploaded, gets the next ticket; the display shows
  // only answers newer than the one it shows.
  let lastTicket = -1;
  const nextTicket = () => {
    lastTicket += 1;
    return lastTicket;
  };

  const ink = new InkSync(pad);
  // The latest upload: its answer is corrected with the file, not with the pad's ink.
  let upload = { ticket: -1, file: null };

  /** Tell the server of an edit: as ink over the socket, else as a picture over HTTP. */
  function deliver(action, final) {
    const ticket = nextTicket();
    if (pad.isEmpty) display.showEmpty(ticket);
    if (socket.isOpen) {
      const message = action === "draw" ? ink.update() : ink[action]();
      socket.send(message, { ticket, final });
      return;
    }
    // Offline, live updates wait: the socket sends the whole drawing once it opens.
    if (final) pad.toBlob().then((blob) => socket.post(blob, { ticket, final }));
  }

  pad.addEventListener("snapshot", (event) => deliver(event.detail.action, event.detail.final));
  pad.addEventListener("change", () => {
    updateButtons();
    correction.withdraw();
  });

  display.addEventListener("pieces", (event) => {
    const { ticket, pieces, selected } = event.detail;
    if (ticket === upload.ticket) overlay.clear();
    else overlay.show(pieces, selected, { width: pad.width, height: pad.height });
  });

  socket.addEventListener("prediction", (event) => {
    const { ticket, final, prediction, source } = event.detail;
    display.show(ticket, prediction, { final, source });
    offerCorrection(ticket, final, prediction);
  });

  /** Offer "Wrong?" for a finished answer to what the page holds now, once it is shown. */
  function offerCorrection(ticket, final, prediction) {
    if (!final || ticket !== lastTicket || pad.isDrawing || display.shownTicket !== ticket) return;
    if (prediction.empty) {
      correction.withdraw();
      return;
    }
    const subject = ticket === upload.ticket ? { file: upload.file } : { ink: ink.drawing() };
    const modelVersion = socket.hello?.model?.version ?? null;
    correction.offer({ ...subject, answer: prediction, modelVersion });
  }
  socket.addEventListener("problem", (event) => {
    const { ticket, final, type, code, message, source, via } = event.detail;
    if (via === "socket") {
      // A refused message may leave the server's ink unlike the pad's (a rate-limited append
      // is not applied): the next message carries the whole drawing. Unless the refused one
      // was that already, which would only be refused again, it goes soon even if the pen
      // stays up, so that the last answer is to the drawing as it is.
      ink.invalidate();
      if (type !== "strokes") scheduleResync();
    }
    // Being rate-limited needs no words: the last message before a pause is always answered.
    if (code === "rate_limited") return;
    display.showProblem(ticket, message, { final, source });
  });

  // One resync for a burst of refusals, a moment later, when the server's budget has room.
  let resyncTimer = null;
  function scheduleResync() {
    if (resyncTimer !== null) return;
    resyncTimer = setTimeout(() => {
      resyncTimer = null;
      // A stroke under way sends the whole drawing with its next update anyway.
      if (ink.synced || pad.isDrawing || !socket.isOpen) return;
      deliver("draw", true);
    }, RESYNC_MS);
  }

  socket.addEventListener("status", (event) => showStatus(event.detail.state));
  socket.addEventListener("hello", (event) => {
    const model = event.detail.model;
    if (!model) return;
    const accuracy =
      typeof model.test_accuracy === "number"
        ? `, ${(model.test_accuracy * 100).toFixed(1)} % on the MNIST test set`
        : "";
    modelLine.textContent = `Model ${model.name} ${model.version}${accuracy}.`;
  });
  // After a (re)connect the server knows nothing of this page: the whole drawing goes once,
  // including what was drawn while the socket was down, and ink follows it. The server is
  // back, so are the corrections that waited for it.
  socket.addEventListener("open", () => {
    ink.reset();
    if (!pad.isEmpty) deliver("draw", !pad.isDrawing);
    corrections.flush();
  });

  function showStatus(state) {
    status.dataset.state = state;
    status.textContent = STATUS_TEXT[state] ?? state;
  }

  function updateButtons() {
    // Clear stays enabled: it also dismisses the answer to an upload.
    buttons.undo.disabled = pad.isEmpty;
    buttons.save.disabled = pad.isEmpty;
  }

  function uploadFile(file) {
    if (!file) return;
    const ticket = nextTicket();
    upload = { ticket, file };
    correction.withdraw();
    socket.post(file, { ticket, final: true, source: `Uploaded ${file.name}` });
  }

  function saveStrokes() {
    const json = JSON.stringify(pad.toJSON());
    const link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([json], { type: "application/json" }));
    link.download = `strokes-${new Date().toISOString().replaceAll(":", "-")}.json`;
    document.body.append(link);
    link.click();
    link.remove();
    // The download has started by now; revoking later frees the blob without racing it.
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  }

  buttons.undo.addEventListener("click", () => pad.undo());
  buttons.clear.addEventListener("click", () => pad.clear());
  buttons.save.addEventListener("click", saveStrokes);

  document.addEventListener("keydown", (event) => {
    if (event.defaultPrevented || event.isComposing) return;
    if (event.key === "Escape") {
      pad.clear();
      return;
    }
    // Shift+Ctrl+Z is redo in most programs; this page has no redo, so it does nothing.
    const command = event.ctrlKey || event.metaKey;
    if (command && !event.shiftKey && !event.altKey && event.key.toLowerCase() === "z") {
      event.preventDefault();
      pad.undo();
    }
  });

  fileInput.addEventListener("change", () => {
    uploadFile(fileInput.files[0]);
    // Choosing the same file again should post it again.
    fileInput.value = "";
  });

  // Drop a picture anywhere on the page. "dragover" must be cancelled for "drop" to fire.
  let dragDepth = 0;
  document.addEventListener("dragenter", (event) => {
    if (!carriesFiles(event)) return;
    event.preventDefault();
    dragDepth += 1;
    document.body.classList.add("dragging");
  });
  document.addEventListener("dragover", (event) => {
    if (!carriesFiles(event)) return;
    event.preventDefault();
    event.dataTransfer.dropEffect = "copy";
  });
  document.addEventListener("dragleave", () => {
    dragDepth = Math.max(0, dragDepth - 1);
    if (dragDepth === 0) document.body.classList.remove("dragging");
  });
  document.addEventListener("drop", (event) => {
    if (!carriesFiles(event)) return;
    event.preventDefault();
    dragDepth = 0;
    document.body.classList.remove("dragging");
    const files = Array.from(event.dataTransfer.files);
    uploadFile(files.find((file) => file.type.startsWith("image/")) ?? files[0]);
  });

  showStatus(socket.state);
  updateButtons();
  socket.connect();
  // Corrections left waiting by an earlier visit.
  corrections.flush();
}

function carriesFiles(event) {
  return event.dataTransfer !== null && Array.from(event.dataTransfer.types).includes("Files");
}

// Module scripts run deferred, just before DOMContentLoaded; the check covers a late load.
if (document.readyState === "loading") {
  document.addEventListener("DOMContentLoaded", start);
} else {
  start();
}
