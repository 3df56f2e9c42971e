"""Writes .dvc/plots.html, the page `dvc plots show` fills (.dvc/config: plots.html_template), with
Vega, Vega-Lite and Vega-Embed inlined, so the charts render with no network. DVC's own page loads
them from a CDN and stays blank offline.

Only to refresh the committed page (e.g. for a newer Vega-Lite), with vl-convert-python, which
bundles these libraries:  pip install vl-convert-python && python src/plots_template.py
"""

from pathlib import Path

VEGA_LITE = "5.21"  # DVC's plot templates are Vega-Lite 5 specs
TARGET = Path(__file__).resolve().parent.parent / ".dvc" / "plots.html"

# dvc-render fills {plot_divs}; leaving out its {scripts} placeholder keeps the CDN tags out
PAGE = """<!DOCTYPE html>
<html>
<head>
    {refresh_tag}
    <meta charset="utf-8">
    <title>DVC plots: the main pipeline</title>
    <!-- Vega __VEGA__, Vega-Lite __VEGA_LITE__, Vega-Embed __EMBED__ inlined by src/plots_template.py -->
    <script>__BUNDLE__</script>
    <style>
        body { font-family: sans-serif; margin: 1em 2em; }
        body > div { display: inline-block; vertical-align: top; margin: 0 2em 2em 0; }
        img { max-width: 640px; }
    </style>
</head>
<body>
    <h1>DVC plots</h1>
    {plot_divs}
</body>
</html>
"""


def main() -> None:
    import vl_convert

    bundle = vl_convert.javascript_bundle(vl_version=VEGA_LITE)
    assert "{plot_divs}" not in bundle and "</script>" not in bundle, "the bundle would break the page"
    page = (
        PAGE.replace("__VEGA__", vl_convert.get_vega_version())
        .replace("__VEGA_LITE__", VEGA_LITE)
        .replace("__EMBED__", vl_convert.get_vega_embed_version())
        .replace("__BUNDLE__", bundle)
    )
    tmp = TARGET.with_suffix(".tmp")
    tmp.write_text(page, encoding="utf-8")
    tmp.replace(TARGET)
    print(f"{TARGET}: {len(page) / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
