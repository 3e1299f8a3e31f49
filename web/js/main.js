/**
 * Wires the page together: the drawing pad, the connection and the answer panel.
 *
 * Owns the page-wide picture tickets that order answers, the buttons (found by
 * `data-action`: undo, clear, save-strokes), the document-level keys (Escape clears,
 * Ctrl/Cmd+Z undoes, whatever has focus), the file input and drag-and-drop uploads, and the
 * connection status line.
 */

import { DrawingPad } from "./canvas.js";
import { PredictionDisplay } from "./display.js";
import { PredictionSocket } from "./socket.js";

const STATUS_TEXT = {
  connecting: "Connecting…",
  live: "Live",
  reconnecting: "Reconnecting…",
  fallback: "Offline: answers after each stroke",
};

function start() {
  const pad = new DrawingPad(document.querySelector("[data-role=pad]"));
  const display = new PredictionDisplay(document.querySelector("[data-role=answer]"));
  const socket = new PredictionSocket();
  const status = document.querySelector("[data-role=status]");
  const modelLine = document.querySelector("[data-role=model]");
  const fileInput = document.querySelector("[data-role=upload]");
  const buttons = {
    undo: document.querySelector("[data-action=undo]"),
    clear: document.querySelector("[data-action=clear]"),
    save: document.querySelector("[data-action=save-strokes]"),
  };

  // Every picture, drawn or uploaded, gets the next ticket; the display shows only answers
  // newer than the one it shows.
  let lastTicket = -1;
  const nextTicket = () => {
    lastTicket += 1;
    return lastTicket;
  };

  // Encoding is asynchronous; one picture at a time keeps them in the order they were drawn.
  // A snapshot requested meanwhile is folded into one more encoding afterwards.
  let encoding = false;
  let queued = null;
  async function sendCanvas(final) {
    if (encoding) {
      queued = { final: final || (queued?.final ?? false) };
      return;
    }
    encoding = true;
    try {
      const ticket = nextTicket();
      if (pad.isEmpty) display.showEmpty(ticket);
      const blob = await pad.toBlob();
      await socket.submit(blob, { ticket, final });
    } finally {
      encoding = false;
    }
    if (queued !== null) {
      const next = queued;
      queued = null;
      sendCanvas(next.final);
    }
  }

  pad.addEventListener("snapshot", (event) => sendCanvas(event.detail.final));
  pad.addEventListener("change", () => updateButtons());

  socket.addEventListener("prediction", (event) => {
    const { ticket, final, prediction, source } = event.detail;
    display.show(ticket, prediction, { final, source });
  });
  socket.addEventListener("problem", (event) => {
    const { ticket, final, message, source } = event.detail;
    display.showProblem(ticket, message, { final, source });
  });
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
  // After a reconnect the server knows nothing of this page: the whole canvas goes again.
  socket.addEventListener("open", () => {
    if (!pad.isEmpty) sendCanvas(true);
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

  function upload(file) {
    if (!file) return;
    const ticket = nextTicket();
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
    upload(fileInput.files[0]);
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
    upload(files.find((file) => file.type.startsWith("image/")) ?? files[0]);
  });

  showStatus(socket.state);
  updateButtons();
  socket.connect();
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
