"""Plotly figures shared by the pages (no Streamlit here: the pages display them)."""

from __future__ import annotations

import plotly.graph_objects as go

from mushcam.toxicity import Toxicity

TOXICITY_COLOURS: dict[str, str] = {
    Toxicity.POISONOUS: "#c0392b",
    Toxicity.MIXED: "#e67e22",
    Toxicity.INEDIBLE: "#8e7f6f",
    Toxicity.EDIBLE: "#2e8b57",
    Toxicity.UNKNOWN: "#7f8c8d",
}
BADGE_COLOURS: dict[str, str] = {
    Toxicity.POISONOUS: "red", Toxicity.MIXED: "orange", Toxicity.EDIBLE: "green", Toxicity.INEDIBLE: "gray",
}


def toxicity_badge(toxicity: str) -> str:
    """A short coloured Markdown label, e.g. ':red[poisonous]'."""
    colour = BADGE_COLOURS.get(toxicity, "gray")
    return f":{colour}[{toxicity}]"


def top_k_bar(
    rows: list[tuple[str, float]],
    toxicities: list[str],
    highlight: str | None = None,
    true_name: str | None = None,
) -> go.Figure:
    """Horizontal bars of the top-k probabilities, highest on top, coloured by toxicity.

    Poisonous classes are also marked in the label ("☠ Amanita"), so the mark survives
    colour blindness and greyscale printing. ``highlight`` outlines the explained class;
    ``true_name`` (where the true class is known) is labelled "← true".
    """
    names = [
        ("☠ " if tox == Toxicity.POISONOUS else "") + name + ("  ← true" if name == true_name else "")
        for (name, _), tox in zip(rows, toxicities, strict=True)
    ]
    values = [p for _, p in rows]
    figure = go.Figure(
        go.Bar(
            x=values[::-1],
            y=names[::-1],
            orientation="h",
            marker={
                "color": [TOXICITY_COLOURS.get(t, "#7f8c8d") for t in toxicities][::-1],
                "line": {
                    "color": ["#111" if name == highlight else "rgba(0,0,0,0)" for name, _ in rows][::-1],
                    "width": 2,
                },
            },
            text=[f"{p:.1%}" for p in values[::-1]],
            textposition="outside",
            customdata=toxicities[::-1],
            hovertemplate="%{y}: %{x:.2%} (%{customdata})<extra></extra>",
        )
    )
    for toxicity in dict.fromkeys(toxicities):  # the colour key: one entry per toxicity shown, in order
        figure.add_trace(go.Scatter(
            x=[None], y=[None], mode="markers", name=str(toxicity), hoverinfo="skip",
            marker={"symbol": "square", "size": 12, "color": TOXICITY_COLOURS.get(toxicity, "#7f8c8d")},
        ))
    figure.data[0].showlegend = False
    figure.update_layout(
        height=90 + 34 * len(rows),
        margin={"l": 10, "r": 40, "t": 40, "b": 30},
        xaxis={"range": [0, 1.15], "tickformat": ".0%", "title": None},
        yaxis={"title": None},
        showlegend=True,
        legend={"orientation": "h", "x": 0, "y": 1.02, "yanchor": "bottom", "title": {"text": "toxicity"}},
    )
    return figure
