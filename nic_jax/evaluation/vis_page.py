"""Writes captions of images as self-critical.pytorch's `vis/vis.json` and a page.

`vis.json` is a list of `{"image_id", "file_name", "caption"}` like the one
self-critical's `eval.py` dumps for its `vis/index.html` viewer (plus the image's
dataset `references` when known). `index.html` is self-contained: every caption is
in the markup itself, so it reads from `file://` with no server and no script.
"""

import html
import json
import os
import shutil
import urllib.parse

_STYLE = """
body { font-family: sans-serif; margin: 1em; background: #fafafa; }
.grid { display: flex; flex-wrap: wrap; gap: 1em; }
figure { width: 280px; margin: 0; padding: 0.5em; background: white;
         border: 1px solid #ddd; border-radius: 4px; }
figure img { width: 100%; height: auto; }
.caption { font-weight: bold; margin: 0.4em 0; }
.file { color: #777; font-size: 0.8em; }
.refs { color: #333; font-size: 0.85em; padding-left: 1.2em; margin: 0.2em 0; }
"""


def _figure(entry: dict, src: str) -> str:
    refs = "".join(f"<li>{html.escape(r)}</li>" for r in entry.get("references", []))
    refs_html = f'<ul class="refs" title="references">{refs}</ul>' if refs else ""
    return (
        f'<figure id="image-{entry["image_id"]}">'
        f'<img src="{html.escape(src)}" alt="{html.escape(entry["file_name"])}">'
        f'<figcaption><p class="caption">{html.escape(entry["caption"])}</p>'
        f'<p class="file">{html.escape(entry["file_name"])}</p>'
        f"{refs_html}</figcaption></figure>"
    )


def _image_source(vis_dir: str, image_path: str, copy: bool, image_id: int) -> str:
    """URL of the image relative to the page: a copy under `imgs/`, or a link."""
    if copy:
        name = f"img{image_id}{os.path.splitext(image_path)[1].lower()}"
        os.makedirs(os.path.join(vis_dir, "imgs"), exist_ok=True)
        shutil.copyfile(image_path, os.path.join(vis_dir, "imgs", name))
        return f"imgs/{name}"
    relative = os.path.relpath(os.path.abspath(image_path), os.path.abspath(vis_dir))
    return urllib.parse.quote(relative.replace(os.sep, "/"))


def write_vis(
    vis_dir: str, entries: list, image_folder: str, title: str, copy_images=False
):
    """Writes `vis_dir/vis.json` and `vis_dir/index.html`; returns their paths.

    entries: dicts with image_id, file_name (relative to `image_folder`), caption
    and optionally references (a list of strings).
    """
    os.makedirs(vis_dir, exist_ok=True)
    json_path = os.path.join(vis_dir, "vis.json")
    with open(json_path, "w", encoding="utf-8") as f:
        json.dump(entries, f, indent=1)
    figures = "\n".join(
        _figure(
            e,
            _image_source(
                vis_dir,
                os.path.join(image_folder, e["file_name"]),
                copy_images,
                e["image_id"],
            ),
        )
        for e in entries
    )
    page = (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head>\n"
        f"<body><h1>{html.escape(title)}</h1>\n"
        f'<div class="grid">\n{figures}\n</div></body></html>\n'
    )
    html_path = os.path.join(vis_dir, "index.html")
    with open(html_path, "w", encoding="utf-8") as f:
        f.write(page)
    return json_path, html_path
