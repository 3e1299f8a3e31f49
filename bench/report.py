"""The figures as text: the method, progress lines, and the tables printed at the end."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from bench.drawings import Drawing

METHOD = (
    "Traffic is the page's own: bench/fixtures/page-ink.json holds the ink messages the page "
    "sent on /ws while python -m bench.record drew digits (or, with --numbers, numbers of 3 "
    "to 5 digits) on it in headless Chromium (mouse, 800-px desktop window, 776x448 pad; "
    "touch, emulated Pixel 7, 388x388), with their send times. "
    "Ink drawers replay them re-sequenced per connection, 20 updates/s while the pen moves; "
    "picture drawers send the page-format PNG of the canvas after each message (RGB, CSS "
    "size, anti-aliased, encoded as Chromium does) as binary frames. Drawers rest 0.5-2 s "
    "between drawings (seeded) and connect over 2 s. Every update counts: an answer with seq "
    "N covers every earlier update not yet covered, and each counts with the time from its "
    "send to that answer. A drawing's last update is 'answered' when answered with its own "
    "seq, 'overtaken' when only a newer one's answer covered it, 'never answered' when no "
    "answer covered it within 10 s. The server's own latency_ms of each answer is kept beside "
    "(server_reported_latency_ms). Percentiles are percentiles (numpy, linear), with their "
    "sample count n. /healthz is probed every 100 ms during each load. The load generator "
    "(drawer processes, probe, samplers) runs on the same machine: its CPU (psutil/"
    "process_time) is reported beside every figure, in cores and as a share of the machine, "
    "as are the server's CPU and peak RSS (the server and all its child processes, sampled "
    "every 0.25 s; server_main_process_cpu is the event loop's process alone), the generator's "
    "send lag behind its schedule, and how busy the whole machine was (other tenants "
    "included). Saturation "
    "is closed loop: each client sends its next recorded update as soon as the previous one "
    "is answered. The ceiling renders the same ink states as the server does "
    "(server.decoding.prepare) and runs the model in batches of 64, one process per core, no "
    "network. The 1,000-drawer case: drawers connect at 200/s, each draws one recorded digit "
    "at a random moment within 10 s, then stays connected 9-11 s. --attack: a victim draws "
    "ink at 10 updates/s (two recorded updates merged into one) for 20 s on a fresh server, "
    "alone, then beside each attack and all together: strokes messages at every limit "
    "(4096x4096, line width 200, 20,000 points, 819,597 bytes) from 2 connections at 20/s "
    "each; 4096x4096 PNGs (67 kB) as binary frames from 2 connections at 20/s each; 32 HTTP "
    "clients posting to /api/predict in a closed loop (half page-format PNGs of the desktop "
    "pad, half the 4096x4096 one). Attackers read every answer and reconnect at once when "
    "closed."
)


def frame_sizes(drawings: Sequence[Drawing], frames: Sequence[Sequence[bytes]]) -> dict[str, Any]:
    """How the rendered picture frames compare with the page's own PNGs, byte for byte."""
    ours = [len(frame) for drawing_frames in frames for frame in drawing_frames]
    ratios = [
        len(frame) / page
        for drawing, drawing_frames in zip(drawings, frames, strict=True)
        for frame, page in zip(drawing_frames, drawing.page_png_bytes, strict=False)
    ]
    pages = [size for drawing in drawings for size in drawing.page_png_bytes]
    return {
        "frames": len(ours),
        "mean_bytes": round(statistics.mean(ours)),
        "page_mean_bytes": round(statistics.mean(pages)) if pages else None,
        "mean_ratio_to_page": round(statistics.mean(ratios), 3) if ratios else None,
    }


def _triple(percentiles: dict[str, Any], keys: Sequence[str] = ("p50", "p95", "p99")) -> str:
    values = [percentiles.get(key) for key in keys]
    if any(value is None for value in values):
        return "-"
    return " / ".join(f"{value:.0f}" for value in values)


def _counts(counter: dict[str, int]) -> str:
    return ", ".join(f"{key} {value}" for key, value in sorted(counter.items())) or "0"


def _cpu(share: dict[str, float]) -> str:
    return f"{share['cores']:.2f} ({100 * share['of_machine']:.0f} %)"


def _got(attackers: dict[str, Any]) -> str:
    return (
        f"{attackers['predictions']} predictions; errors {_counts(attackers['errors'])}; "
        f"HTTP {_counts(attackers['http_statuses'])}; "
        f"closed {_counts(attackers['closed_by_server'])}"
    )


def one_line(name: str, result: dict[str, Any]) -> str:
    """A progress line for a drawer scenario."""
    return (
        f"    updates p50/p95/p99 {_triple(result['update_latency_ms'])} ms, "
        f"last update {_triple(result['last_update_latency_ms'])} ms, "
        f"{result['answers_per_s']} answers/s, never answered "
        f"{result['last_update_never_answered']}/{result['drawings']}, "
        f"errors {_counts(result['errors'])}, dropped {result['dropped_connections']}, "
        f"healthz p99 {result['healthz_ms']['p99']} ms, server {_cpu(result['server_cpu'])}, "
        f"generator {_cpu(result['generator_cpu'])}"
    )


def attackers(tally: Any) -> dict[str, Any] | None:
    """What the attackers sent and got, as plain figures."""
    if tally is None:
        return None
    wall_s = tally.wall_s or 1.0
    return {
        "sent": dict(tally.sent),
        "sent_per_s": {kind: round(count / wall_s, 1) for kind, count in tally.sent.items()},
        "megabytes_sent": round(tally.bytes_sent / 1e6, 1),
        "predictions": tally.predictions,
        "errors": dict(tally.errors),
        "connections": tally.connections,
        "connect_failures": tally.connect_failures,
        "closed_by_server": dict(tally.close_codes),
        "http_statuses": dict(tally.http_statuses),
        "http_failures": tally.http_failures,
        "cpu_cores": round(tally.cpu_s / wall_s, 2),
    }


def attack_line(name: str, phase: dict[str, Any]) -> str:
    """A progress line for an attack phase."""
    victim = phase["victim"]
    line = (
        f"    victim p50/p99 {_triple(victim['update_latency_ms'], ('p50', 'p99'))} ms, "
        f"last update {_triple(victim['last_update_latency_ms'], ('p50', 'p99'))} ms, "
        f"errors {_counts(victim['errors'])}, healthz p99 {phase['healthz_ms']['p99']} ms, "
        f"server peak {phase['server_peak_rss_mib']} MiB"
    )
    if phase["attackers"]:
        got = phase["attackers"]
        line += (
            f"; attackers sent {_counts(got['sent'])}, got {got['predictions']} predictions, "
            f"errors {_counts(got['errors'])}, HTTP {_counts(got['http_statuses'])}, "
            f"closed {_counts(got['closed_by_server'])}"
        )
    return line


def saturation_line(saturation: dict[str, Any]) -> str:
    """Closed-loop throughput, beside the ceiling when there is one."""
    line = (
        f"saturation ({saturation['clients']} closed-loop ink clients): "
        f"{saturation['predictions_per_s']:.0f} predictions/s"
    )
    if "share_of_ceiling" in saturation:
        line += f", {100 * saturation['share_of_ceiling']:.0f} % of the ceiling"
    line += (
        f"; server {_cpu(saturation['server_cpu'])}, "
        f"{saturation['server_cpu_ms_per_answer']} ms of server CPU an answer"
    )
    if "cpu_efficiency_vs_ceiling" in saturation:
        line += (
            f" ({100 * saturation['cpu_efficiency_vs_ceiling']:.0f} % of the ceiling's efficiency)"
        )
    return line + f"; generator {_cpu(saturation['generator_cpu'])}"


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A Markdown table, columns padded to line up in a terminal too."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

    return "\n".join([line(headers), line(["-" * w for w in widths]), *map(line, rows)])


def tables(section: dict[str, Any]) -> str:
    """Every figure of a run, as tables."""
    machine = section["machine"]
    parts = [
        f"machine: {machine['cpu']}, {machine['logical_cores']} cores, "
        f"{machine['memory_gib']} GiB; load average at start {machine['load_average_at_start']}; "
        f"commit {section['commit']}",
    ]
    traffic = section["traffic"]
    parts.append(
        f"traffic: {traffic['drawings']} recorded drawings ({', '.join(traffic['devices'])}), "
        f"an update every {traffic['median_ms_between_updates_of_a_stroke']:.0f} ms while the "
        f"pen moves (median), ink messages "
        f"{traffic['mean_message_bytes']:.0f} B on average"
        + (
            f"; picture frames {section['traffic']['picture_frames']['mean_bytes']} B on average, "
            f"{section['traffic']['picture_frames']['mean_ratio_to_page']:.2f}x the page's"
            if "picture_frames" in traffic
            else ""
        )
    )
    if "servers" in section:
        if "ceiling" in section:
            ceiling = section["ceiling"]
            parts.append(
                f"in-process ceiling: {ceiling['predictions_per_s']:.0f} predictions/s, "
                f"{ceiling['cpu_ms_per_prediction']:.2f} ms of CPU each"
            )
        for workers, run in section["servers"].items():
            headers = [
                f"--workers {workers}",
                "sent/s",
                "answers/s",
                "update p50/95/99 ms",
                "last update p50/95/99 ms",
                "last update never / overtaken / drawings",
                "errors",
                "dropped",
                "healthz p50/99 ms",
                "server peak RSS MiB",
                "server CPU cores",
                "generator CPU cores (machine)",
                "machine busy",
            ]
            rows = []
            for name, result in run.items():
                if name.startswith("saturation"):
                    continue
                rows.append(
                    [
                        name,
                        f"{result['updates_per_s']:.0f}",
                        f"{result['answers_per_s']:.0f}",
                        _triple(result["update_latency_ms"]),
                        _triple(result["last_update_latency_ms"]),
                        f"{result['last_update_never_answered']} / "
                        f"{result['last_update_overtaken']} / {result['drawings']}",
                        _counts(result["errors"]),
                        str(result["dropped_connections"] + result["connect_failures"]),
                        _triple(result["healthz_ms"], ("p50", "p99")),
                        f"{result['server_peak_rss_mib']:.0f}",
                        f"{result['server_cpu']['cores']:.2f}",
                        _cpu(result["generator_cpu"]),
                        f"{100 * result['machine_busy']:.0f} %",
                    ]
                )
            parts.append(table(headers, rows))
            if "saturation, ink" in run:
                parts.append(saturation_line(run["saturation, ink"]))
    if "attack" in section:
        headers = [
            "attack",
            "victim update p50/99 ms",
            "victim last update p50/99 ms",
            "victim errors",
            "healthz p50/99 ms",
            "server peak RSS MiB",
            "attackers sent/s",
            "attackers got",
            "generator CPU cores (machine)",
            "machine busy",
        ]
        rows = []
        for name, phase in section["attack"].items():
            victim = phase["victim"]
            got = phase["attackers"]
            rows.append(
                [
                    name,
                    _triple(victim["update_latency_ms"], ("p50", "p99")),
                    _triple(victim["last_update_latency_ms"], ("p50", "p99")),
                    _counts(victim["errors"])
                    + (
                        f", dropped {victim['dropped_connections']}"
                        if victim["dropped_connections"]
                        else ""
                    ),
                    _triple(phase["healthz_ms"], ("p50", "p99")),
                    f"{phase['server_peak_rss_mib']:.0f}",
                    _counts(got["sent_per_s"]) if got else "-",
                    _got(got) if got else "-",
                    _cpu(phase["generator_cpu"]),
                    f"{100 * phase['machine_busy']:.0f} %",
                ]
            )
        parts.append(table(headers, rows))
    return "\n\n".join(parts)
