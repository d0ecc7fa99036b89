"""The explorer's page: ``Explorer``'s actions laid out as Gradio Blocks, one tab each, served offline.

Offline means: analytics off, no share link, no server-side rendering (it would start Node), and a theme of
system fonts (the default theme loads its fonts from Google). Every action runs through ``_guard``, so bad
input (not an image, too large, a face number out of range) shows a message and the server keeps serving.
Each event has an ``api_name``, which is what ``gradio_client`` calls.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # before gradio is imported: no telemetry, no checks

import gradio as gr  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402  (gradio's own dependency; its plots take data frames)

from ..errors import CelebaeError  # noqa: E402
from .explorer import Explorer  # noqa: E402

log = logging.getLogger("celebae")
LOOPBACK = ("127.0.0.1", "localhost", "::1")
MAX_UPLOAD = "25mb"  # a face photo is a few MB; the pixel count is checked from the header before decoding
SYSTEM_FONTS = ["ui-sans-serif", "system-ui", "-apple-system", "Segoe UI", "Roboto", "sans-serif"]


def _guard(action: Callable[..., Any], ex: Explorer) -> Callable[..., Any]:
    """The action, with a one-line message in the page instead of an error for anything the user can fix, and
    each picture it answers with written to a file of its own (``Explorer.picture``): Gradio would write
    equal pictures to one shared cache file, which a second client could read while it is being rewritten."""

    def run(*args: Any) -> Any:
        try:
            return _as_files(action(*args), ex)
        except CelebaeError as err:
            raise gr.Error(str(err)) from None
        except (OSError, ValueError) as err:  # an unreadable upload, a file that is not an image
            raise gr.Error(f"cannot use that input: {err}") from None

    run.__name__ = action.__name__
    return run


def _as_files(value: Any, ex: Explorer) -> Any:
    """Pictures (H×W×3 uint8 arrays) anywhere in an action's answer → paths of their own PNG files."""
    if isinstance(value, np.ndarray) and value.ndim == 3 and value.dtype == np.uint8:
        return str(ex.picture(value))
    if isinstance(value, (tuple, list)):
        return type(value)(_as_files(v, ex) for v in value)
    return value


def _face_input(label: str) -> gr.Image:
    """An image input that hands the action the uploaded file itself (``type="filepath"``, no mode
    conversion), so the page decodes images exactly as ``celebae.load(RUN).images`` does."""
    return gr.Image(label=label, sources=["upload", "webcam", "clipboard"], type="filepath", image_mode=None)


def _code_plot(code: Any) -> pd.DataFrame:
    return pd.DataFrame({"index": range(len(code)), "value": [float(v) for v in code]})


def _reconstruct_tab(ex: Explorer) -> None:
    with gr.Row():
        image = _face_input("face")
        with gr.Column():
            face = gr.Number(label=f"or a face of the split (0–{len(ex.split.files) - 1})", value=0, precision=0)
            take = gr.Button("Take this face")
            run = gr.Dropdown(choices=[(name, i) for i, name in enumerate(ex.names)], value=0, label="run")
            go = gr.Button("Reconstruct", variant="primary")
    with gr.Row():
        seen = gr.Image(label="input (as the model sees it)", format="png")
        out = gr.Image(label="reconstruction", format="png")
        heat = gr.Image(label="per-pixel error", format="png")
    with gr.Row():
        psnr, ssim = gr.Number(label="PSNR (dB)", precision=2), gr.Number(label="SSIM", precision=4)
        file = gr.File(label="the code (.npy)")
    plot = gr.LinePlot(x="index", y="value", label="the code", height=200)
    take.click(_guard(ex.face, ex), face, image, api_name="face")

    def reconstruct(img: Any, which: int) -> tuple:
        x, y, h, p, s, code = ex.reconstruct(img, which)
        return x, y, h, p, s, str(ex.save_code(code)), _code_plot(code)

    go.click(_guard(reconstruct, ex), [image, run], [seen, out, heat, psnr, ssim, file, plot], api_name="reconstruct")


def _compare_tab(ex: Explorer) -> None:
    gr.Markdown(f"Rows: the faces, then {', '.join(ex.names)}.")
    with gr.Row():
        first = gr.Number(label="first face of the split", value=0, precision=0)
        count = gr.Slider(1, 12, value=6, step=1, label="faces")
        image = _face_input("or one face of your own")
    go = gr.Button("Compare", variant="primary")
    grid = gr.Image(label="faces and reconstructions", format="png")
    go.click(_guard(lambda img, a, n: ex.compare(img, a, n), ex), [image, first, count], grid, api_name="compare")


def _interpolate_tab(ex: Explorer) -> None:
    last = len(ex.split.files) - 1
    with gr.Row():
        a = gr.Number(label=f"face A (0–{last})", value=0, precision=0)
        b = gr.Number(label=f"face B (0–{last})", value=min(1, last), precision=0)
        t = gr.Slider(0, 1, value=0.5, step=0.05, label="A → B")
    with gr.Row():
        mix = gr.Image(label="the mix", format="png")
        row = gr.Image(label="A, the straight line between their codes, B", format="png")
    go = gr.Button("Interpolate", variant="primary")
    go.click(_guard(ex.interpolate, ex), [a, b, t], [mix, row], api_name="interpolate")
    t.release(_guard(ex.interpolate, ex), [a, b, t], [mix, row], api_visibility="private")


def _neighbours_tab(ex: Explorer) -> None:
    with gr.Row():
        image = _face_input("face")
        k = gr.Slider(1, 32, value=8, step=1, label="neighbours")
    go = gr.Button("Find the nearest faces", variant="primary")
    gallery = gr.Gallery(label=f"nearest in code space, of {len(ex.split.files):,} faces", columns=8, format="png")
    go.click(_guard(ex.neighbours, ex), [image, k], gallery, api_name="neighbours")


def _anomalies_tab(ex: Explorer) -> None:
    n = gr.Slider(1, 32, value=8, step=1, label="faces")
    go = gr.Button("Rank the split", variant="primary")
    typical = gr.Gallery(label="most typical (lowest reconstruction error)", columns=8, format="png")
    unusual = gr.Gallery(label="least typical (highest reconstruction error)", columns=8, format="png")
    go.click(_guard(ex.anomalies, ex), n, [typical, unusual], api_name="anomalies")


def _walk_tab(ex: Explorer) -> None:
    gr.Markdown("From the split's mean code along its first principal directions (in standard deviations).")
    sliders = [gr.Slider(-3, 3, value=0, step=0.25, label=f"direction {i + 1}") for i in range(len(ex.directions))]
    face = gr.Image(label="decoded", format="png")
    gr.Button("Decode", variant="primary").click(_guard(ex.walk, ex), sliders, face, api_name="walk")
    for s in sliders:
        s.release(_guard(ex.walk, ex), sliders, face, api_visibility="private")


def _attributes_tab(ex: Explorer) -> None:
    gr.Markdown("A face's code moved along an attribute's direction: the mean code of labelled training faces "
                "with the attribute minus that of those without (DFC-VAE's recipe).")  # fmt: skip
    with gr.Row():
        image = _face_input("face")
        name = gr.Dropdown(ex.attributes.names, value="Smiling", label="attribute")
        amount = gr.Slider(-3, 3, value=1, step=0.25, label="amount (multiples of the direction)")
    go = gr.Button("Edit", variant="primary")
    with gr.Row():
        edited = gr.Image(label="edited", format="png")
        strip = gr.Image(label="−2, −1, 0, +1, +2", format="png")
    how = gr.Markdown()
    go.click(_guard(ex.edit, ex), [image, name, amount], [edited, strip, how], api_name="edit")


TABS = {
    "Reconstruct": _reconstruct_tab,
    "Compare": _compare_tab,
    "Interpolate": _interpolate_tab,
    "Neighbours": _neighbours_tab,
    "Anomalies": _anomalies_tab,
    "Walk the code space": _walk_tab,
}


def build_app(ex: Explorer) -> gr.Blocks:
    """The page: one tab per action over the explorer's runs and split."""
    # uploads and Gradio's copies of answers are deleted an hour after they were made, and all of them with the
    # explorer's folder when it closes
    with gr.Blocks(title="celebae explorer", analytics_enabled=False, delete_cache=(600, 3600)) as app:
        gr.Markdown(
            f"## celebae explorer\n{', '.join(ex.names)} · {len(ex.split.files):,} faces of the split · "
            f"codes of {ex.runs[0].model.code_size} numbers"
        )
        for title, tab in TABS.items():
            with gr.Tab(title):
                tab(ex)
        if ex.attributes is not None:
            with gr.Tab("Attributes"):
                _attributes_tab(ex)
    return app


def launch(ex: Explorer, host: str = "127.0.0.1", port: int | None = None, block: bool = True) -> tuple[Any, str]:
    """Serve the page on ``host:port`` (no share link); returns (the app, its address). With ``block`` it
    serves until Ctrl-C, then removes the explorer's files."""
    os.environ["GRADIO_TEMP_DIR"] = str(ex.uploads)  # uploads go to the explorer's own folder, removed on close
    if host not in LOOPBACK:
        log.warning(
            "serving on %s: anyone who can reach this machine's port %s can use the explorer and upload images "
            "to it; --host 127.0.0.1 serves this machine only",
            host,
            port,
        )
    app = build_app(ex)
    theme = gr.themes.Default(font=SYSTEM_FONTS, font_mono=["ui-monospace", "monospace"])
    try:
        _, url, _ = app.launch(
            server_name=host,
            server_port=port,
            share=False,
            show_error=True,  # a file that is not an image fails in Gradio's own decoding: show its message
            prevent_thread_lock=True,
            ssr_mode=False,
            theme=theme,
            quiet=True,
            allowed_paths=[str(ex.out)],
            max_file_size=MAX_UPLOAD,
        )
    except OSError as err:
        raise CelebaeError(f"cannot serve on {host}:{port}: {err}; choose another --port") from None
    if block:
        print(f"celebae explorer on {url} (Ctrl-C stops it)", flush=True)
        try:
            app.block_thread()
        finally:
            app.close()
            ex.close()
    return app, url
