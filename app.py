"""EmojiLM Space: type text, get emoji, and watch the looped model refine its answer loop by loop.

Layout and wiring only; everything computed comes from emojilm (space, views, sources).

    python app.py [--repo chili-lab/Emoji-ByteLM] [--revision REV] [--port 7860] [--share]
"""

from __future__ import annotations

import argparse

import gradio as gr
import pandas as pd

from emojilm import links, views
from emojilm.config import LOOP_MODES
from emojilm.engine import MAX_ROWS
from emojilm.paths import ASSETS
from emojilm.prompt import CANDIDATE_TEMPLATES
from emojilm.request import DRAW_SEED, MAX_NEW_TOKENS, MAX_PAGE_SEED, MAX_TEXT_CHARS, RANGES, TEMPERATURE, THRESHOLD
from emojilm.sources import ModelRegistry, SourceConfig
from emojilm.space import EXAMPLES, SpaceBackend, keep_loopback_off_proxies, parse_request

CSS = (ASSETS / "style.css").read_text(encoding="utf-8")
AUTO = "auto (from the checkpoint or the probe)"
# The link box gets the page's own address with the request's query string; Copy link copies it.
LINK_JS = "(query) => query.startsWith('?') ? new URL(query, window.location.href).href : query"
# It answers in the note under the link box, since the button itself shows nothing.
COPY_JS = """async (link) => {
    if (!link) return 'Nothing to copy yet: translate first.';
    if (!link.startsWith('http')) return link;  // the box says why there is no link
    try { await navigator.clipboard.writeText(link); return '✅ Link copied.'; }
    catch (err) { return 'The browser did not let the page copy: select the link above and copy it.'; }
}"""

try:  # ZeroGPU Spaces: run model calls on a borrowed GPU
    import spaces

    on_gpu, ZERO_GPU = spaces.GPU, True
except ImportError:
    ZERO_GPU = False

    def on_gpu(fn):
        return fn


# Answers run side by side, up to the engine's batch (emojilm.engine): they share its forward steps.
# So do traces: a trace's teacher-forced pass runs between the engine's steps (a job), and its per-loop
# answers, like /trace's own answer, as rows of the batch.
ANSWERS = {"concurrency_limit": MAX_ROWS, "concurrency_id": "answers"}
TRACES = {"concurrency_limit": MAX_ROWS, "concurrency_id": "traces"}


def build(backend: SpaceBackend, first_source: str) -> gr.Blocks:
    registry = backend.registry
    page = registry.page_state(first_source, chosen=False)  # the Hub model may have become ready since
    first = registry.get(page.source)

    api_translate, api_trace = on_gpu(backend.api_translate_stream), on_gpu(backend.api_trace)  # decorated once

    def loops_slider(lm, value=None, **kwargs):
        info = f"trained with {lm.n_loops}; more is extrapolation"
        return gr.Slider(1, lm.limits.max_loops, value=value or lm.n_loops, step=1, info=info, **kwargs)

    with gr.Blocks(title="EmojiLM — text to emoji with a looped transformer") as demo:
        gr.Markdown(
            "# 🔁 EmojiLM\nA byte-level **looped transformer** turns text into emoji: the same layers run "
            "again and again, and you can watch the answer sharpen **loop by loop**.",
            elem_id="elm-title",
        )
        with gr.Row(equal_height=False):
            with gr.Column(scale=3):
                model = gr.Dropdown(registry.sources, value=page.source, label="Model")
                status = gr.Markdown(page.note, elem_id="elm-status")
                chosen = gr.State(False)  # the visitor picked a model: never switch it for them
                described = gr.State(page.source)  # the model the loop slider and model info are set for
                timer = gr.Timer(1.0, active=page.polling)  # refreshes the status while a model loads
                link_note = gr.Markdown(elem_id="elm-link-note")  # what of the page's link could not be used
                linked = gr.State(False)  # the page's link has a text: answer it
                text = gr.Textbox(label="Text", placeholder="I love pizza", lines=2, max_length=MAX_TEXT_CHARS)
                gr.Examples(EXAMPLES, inputs=text, label="Try")
                translate = gr.Button("Translate ✨", variant="primary")
                copy_link = gr.Button("🔗 Copy link", size="sm", elem_id="elm-copy-link")  # shown in the answer's bar
                answer = gr.Textbox(
                    label="Emoji", interactive=False, buttons=["copy", copy_link], elem_id="elm-answer", lines=1
                )
                summary = gr.Markdown(elem_id="elm-summary")
                link = gr.Textbox(label="Link to this answer", interactive=False, max_lines=1, elem_id="elm-link")
                copy_note = gr.Markdown(elem_id="elm-copy-note")  # what Copy link did
                link_query = gr.Textbox(visible=False)  # the request's query string, made absolute by LINK_JS
            with gr.Column(scale=2):
                # The same ranges as the API's (a link may ask for anything the API takes).
                temperature = gr.Slider(
                    *TEMPERATURE, value=0, step=0.05, label="Temperature", info=RANGES["temperature"]
                )
                top_p = gr.Slider(0.01, 1, value=1, step=0.01, label="Top-p", info=RANGES["top_p"])
                loops = loops_slider(first, label="Loops")
                max_new = gr.Slider(
                    1, MAX_NEW_TOKENS, value=64, step=1, label="Max new bytes", info=RANGES["max_new_tokens"]
                )
                seed = gr.Number(
                    value=-1, minimum=DRAW_SEED, maximum=MAX_PAGE_SEED, precision=0, label="Seed", info=RANGES["seed"]
                )
                adaptive = gr.Checkbox(label="Adaptive loops: stop looping a byte once loops agree")
                threshold = gr.Slider(
                    *THRESHOLD, value=0.05, step=0.01, label="Adaptive threshold (KL, nats)", info=RANGES["threshold"]
                )
                with gr.Accordion("Advanced: how the checkpoint is run", open=False):
                    loop_mode = gr.Dropdown([AUTO, *LOOP_MODES], value=AUTO, label="Loop mode")
                    template = gr.Dropdown([AUTO, *CANDIDATE_TEMPLATES], value=AUTO, label="Prompt template")
        gr.Markdown("## Loop by loop\nColour: how likely each loop finds the final character. "
                    "Each cell shows that loop's own top pick; hover or tap for its top 5.")  # fmt: skip
        heatmap = gr.HTML(elem_id="elm-heatmap-box")
        with gr.Row():
            per_loop = gr.Dataframe(
                headers=["loops", "answer", "same as final"], label="Answer when stopped after k loops",
                interactive=False, wrap=True, column_widths=["18%", "42%", "40%"], elem_id="elm-per-loop",
            )  # fmt: skip
            plot = gr.LinePlot(
                x="loop", y="value", color="metric", y_title="P, or nats", color_title="", label="Convergence",
                height=280, elem_id="elm-plot",
            )  # fmt: skip
        with gr.Accordion("Inside each loop: layer by layer", open=False):
            show_layers = gr.Button("Show every layer of every loop", size="sm")
            layers = gr.HTML(elem_id="elm-layers-box")
        with gr.Accordion("Model", open=False):
            info = gr.Markdown(views.model_info_markdown(first))
        streamed_state = gr.State()  # (request, final answer) handed from translate to trace

        def variant(source, mode, tmpl):
            return backend.model(source, None if mode == AUTO else mode, None if tmpl == AUTO else tmpl)

        def pick(source, mode, tmpl):
            try:
                return variant(source, mode, tmpl)
            except ValueError as err:
                raise gr.Error(str(err)) from None

        @on_gpu
        def run_translate(source, mode, tmpl, text, temperature, top_p, loops, max_new, seed, adaptive, threshold):
            lm = pick(source, mode, tmpl)
            try:
                request = parse_request(lm, text, temperature, top_p, loops, max_new, seed, adaptive, threshold)
                overrides = (None if value == AUTO else value for value in (mode, tmpl))
                query = links.build_link(request, source, *overrides) or links.TOO_LONG
                for partial in backend.stream(lm, request):
                    yield partial.text, views.summary_line(partial, request.seed), (request, partial), query
            except ValueError as err:
                raise gr.Error(str(err)) from None

        @on_gpu
        def run_trace(source, mode, tmpl, streamed):
            if streamed is None:
                return gr.skip(), gr.skip(), gr.skip()
            heatmap_html, table, frame = backend.trace_views(pick(source, mode, tmpl), *streamed)
            # Loops as ordered categories: a numeric axis would tick at 1.5, 2.5... loops.
            loop_names = [str(k) for k in sorted(frame["loop"].unique())]
            return heatmap_html, table, gr.LinePlot(frame.astype({"loop": str}), sort=loop_names)

        @on_gpu
        def run_layers(source, mode, tmpl, streamed):
            if streamed is None:
                return "Translate something first: the lens shows how its answer forms inside each loop."
            return backend.layer_view(pick(source, mode, tmpl), *streamed)

        def switch_model(source, mode, tmpl):
            try:
                lm = variant(source, mode, tmpl)
            except ValueError as err:  # still loading, or failed and loading again: refresh follows it
                return gr.skip(), gr.skip(), str(err), gr.skip(), gr.Timer(active=True)
            return loops_slider(lm), views.model_info_markdown(lm), registry.status(source), source, gr.skip()

        def refresh(shown, chosen, described, mode, tmpl):
            page = registry.page_state(shown, chosen, described)
            ticking = gr.Timer(active=page.polling)
            moved = gr.skip() if page.source == shown else page.source
            if not page.redescribe:
                return page.note, moved, gr.skip(), gr.skip(), gr.skip(), ticking
            lm = pick(page.source, mode, tmpl)
            return page.note, moved, loops_slider(lm), views.model_info_markdown(lm), page.source, ticking

        def open_link(shown, request: gr.Request):
            """The page's query string, if it has one, into the controls (the model's slider and info with them)."""
            try:
                page = links.read_link(dict(request.query_params), registry.sources, backend.model, shown)
            except ValueError as err:  # the page's own model is not ready: leave the page as it is
                return {link_note: f"⚠️ The link could not be opened: {err}"}
            if page is None:  # a plain visit: nothing to change
                return {link_note: gr.skip()}
            lm = backend.model(page.source, page.loop_mode, page.template)
            given = {
                text: page.text, temperature: page.temperature, top_p: page.top_p, max_new: page.max_new,
                seed: page.seed, adaptive: page.adaptive, threshold: page.threshold,
                chosen: page.model_from_link or None, linked: page.text is not None or None,
            }  # fmt: skip
            return {component: value for component, value in given.items() if value is not None} | {
                loops: loops_slider(lm, page.loops), model: page.source, described: page.source,
                loop_mode: page.loop_mode or AUTO, template: page.template or AUTO,
                info: views.model_info_markdown(lm), link_note: page.note,
            }  # fmt: skip

        inputs = [model, loop_mode, template, text, temperature, top_p, loops, max_new, seed, adaptive, threshold]
        # linked.change: the page opened on a link with a text, answered as if the visitor pressed Translate.
        for trigger in (translate.click, text.submit, linked.change):
            answered = trigger(
                run_translate, inputs, [answer, summary, streamed_state, link_query], api_visibility="private",
                **ANSWERS,
            )  # fmt: skip
            answered.success(
                run_trace, [model, loop_mode, template, streamed_state], [heatmap, per_loop, plot],
                api_visibility="private", **TRACES,
            )  # fmt: skip
            answered.success(None, link_query, link, js=LINK_JS)
        # A new answer has a new link, and the notes about the page's link and its copy are done with.
        gr.on([translate.click, text.submit], None, None, [link_note, copy_note], js="() => ['', '']")
        copy_link.click(None, link, copy_note, js=COPY_JS)
        show_layers.click(
            run_layers, [model, loop_mode, template, streamed_state], layers, api_visibility="private", **TRACES
        )
        # .input, not .change: a switch made by refresh or a link must not count as the visitor's choice.
        gr.on(
            [model.input, loop_mode.input, template.input], switch_model, [model, loop_mode, template],
            [loops, info, status, described, timer], api_visibility="private",
        )  # fmt: skip
        model.input(lambda: True, None, chosen, api_visibility="private")
        refresh_args = dict(
            fn=refresh, inputs=[model, chosen, described, loop_mode, template],
            outputs=[status, model, loops, info, described, timer],
            show_progress="hidden", concurrency_limit=None, api_visibility="private",
        )  # fmt: skip
        demo.load(
            open_link, model,
            [text, temperature, top_p, loops, max_new, seed, adaptive, threshold, model, loop_mode, template, chosen,
             described, info, link_note, linked],
            show_progress="hidden", concurrency_limit=None, api_visibility="private",
        ).then(**refresh_args)  # fmt: skip  # after the link: a model it names is never switched
        timer.tick(**refresh_args)

        # A generator: Gradio streams its yields to a client that submits, and stops it when that client
        # cancels; it reads the outputs from the return hint, which is what each yield is.
        @gr.api(api_name="translate", **ANSWERS)
        def translate_api(
            text: str, temperature: float = 0.0, top_p: float = 1.0, loops: int | None = None,
            max_new_tokens: int = 64, seed: int | None = None,
        ) -> tuple[str, str]:  # fmt: skip
            """Translate text into emoji with the default model. Streams (emoji so far, summary line) at
            every complete character; the last is the answer. A cancelled call stops decoding."""
            try:
                yield from api_translate(text, temperature, top_p, loops, max_new_tokens, seed)
            except ValueError as err:
                raise gr.Error(str(err)) from None

        @gr.api(api_name="trace", **TRACES)
        def trace_api(
            text: str, temperature: float = 0.0, top_p: float = 1.0, loops: int | None = None,
            max_new_tokens: int = 64, seed: int | None = None, per_layer: bool = False,
        ) -> dict:  # fmt: skip
            """The translation and its per-loop trace tables (lists of row records); per_layer: also
            by_layer, the prediction after every block application of every loop."""
            try:
                output, *tables = api_trace(text, temperature, top_p, loops, max_new_tokens, seed, per_layer)
            except ValueError as err:
                raise gr.Error(str(err)) from None
            names = ("by_loop", "per_loop_outputs", "summary", "by_layer")[: len(tables)]
            return {"output": output, **{n: _records(t) for n, t in zip(names, tables, strict=True)}}

    return demo


def _records(table: pd.DataFrame) -> list[dict]:
    return table.astype(object).where(table.notna(), None).to_dict(orient="records")


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the EmojiLM Space locally.")
    parser.add_argument("--repo", help="Hub repo of the default model ('' for none) [$EMOJILM_REPO]")
    parser.add_argument("--revision", help="Hub revision to pin [$EMOJILM_REVISION]")
    modes = ", ".join(LOOP_MODES)
    parser.add_argument("--loop-mode", help=f"pin the Hub model's loop mode ({modes}) [$EMOJILM_LOOP_MODE]")
    parser.add_argument("--template", help="pin the Hub model's prompt template (a name or a string with {text}) "
                        "[$EMOJILM_TEMPLATE]")  # fmt: skip
    parser.add_argument("--dtype", help="weight format: float32, bfloat16, int8, or auto (default: the fastest "
                        "that agrees with float32 on the model) [$EMOJILM_DTYPE]")  # fmt: skip
    parser.add_argument("--host", default=None, help="server name (default 127.0.0.1; 0.0.0.0 in a Space)")
    parser.add_argument("--port", type=int, default=None, help="port (default $GRADIO_SERVER_PORT or 7860)")
    parser.add_argument("--share", action="store_true", help="also make a public gradio.live link")
    args = parser.parse_args()

    try:
        config = SourceConfig.from_env(
            hub_repo=args.repo,
            hub_revision=args.revision,
            loop_mode=args.loop_mode,
            template=args.template,
            dtype=args.dtype,
            check_texts=tuple(EXAMPLES),
        )
    except ValueError as problem:
        parser.error(str(problem))
    registry = ModelRegistry(config)
    first = registry.start()
    demo = build(SpaceBackend(registry, batched=not ZERO_GPU), first)
    gpu = "cuda" in str(registry.get(first).device)
    demo.queue(default_concurrency_limit=4 if gpu else 1, max_size=32)
    keep_loopback_off_proxies()
    demo.launch(server_name=args.host, server_port=args.port, share=args.share, css=CSS)


if __name__ == "__main__":
    main()
