"""One top-level group per run for the layers Processing loads (main thread, post-processors).

Processing adds each loaded layer where the Layers panel's selection puts new layers: inside
whatever group is selected. Filing every layer "in the group beside it" then nested groups in
an unrelated map's group (a staircase of same-named groups, one layer each). Here a run is a
key: its group is found by that key at the top of the tree (made there, first, when missing),
whatever is selected, and each layer moves into it at its rank. Another group of the same
name (an earlier run) is left alone.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable

from qgis.core import (
    QgsLayerTreeGroup,
    QgsLayerTreeLayer,
    QgsProcessingContext,
    QgsProcessingLayerPostProcessorInterface,
    QgsProject,
)

RUN_PROPERTY = "paligemma_qgis/run"  # custom property of a run's group: the run's key
RANK_PROPERTY = "paligemma_qgis/rank"  # custom property of a layer node: its place in the group
# Keeps post-processors alive until QGIS has used them (it holds no Python reference).
_POST_PROCESSORS: list[QgsProcessingLayerPostProcessorInterface] = []


def run_group(project: QgsProject, run: str, name: str) -> QgsLayerTreeGroup:
    """The group of run ``run`` at the top of the layer tree (inserted first, named ``name``)."""
    root = project.layerTreeRoot()
    for child in root.children():
        if isinstance(child, QgsLayerTreeGroup) and child.customProperty(RUN_PROPERTY) == run:
            return child
    group = root.insertGroup(0, name)
    group.setCustomProperty(RUN_PROPERTY, run)
    return group


def file_layer(
    layer, project: QgsProject, run: str, name: str, rank: int, visible: bool = True
) -> QgsLayerTreeGroup | None:
    """Move ``layer`` (already in the tree) into its run's group, after the layers of lower rank."""
    root = project.layerTreeRoot()
    node = root.findLayer(layer.id())
    if node is None:
        return None
    group = run_group(project, run, name)
    others = [child for child in group.children() if child is not node]
    position = sum(
        1
        for child in others
        if isinstance(child, QgsLayerTreeLayer) and int(child.customProperty(RANK_PROPERTY, 0)) < rank
    )
    clone = node.clone()
    clone.setCustomProperty(RANK_PROPERTY, rank)
    clone.setItemVisibilityChecked(visible)
    index = position  # among the others; the node itself still counts where it sits before
    if node.parent() is group and group.children().index(node) < position:
        index += 1
    # Insert the copy first, then remove the old node: a layer whose last node leaves the tree
    # would leave the project too.
    group.insertChildNode(index, clone)
    node.parent().removeChildNode(node)
    return group


class RunLayerPlacer(QgsProcessingLayerPostProcessorInterface):
    """Styles a layer Processing loaded (and names it) and files it in its run's group."""

    def __init__(self, style: Callable, run: str, group: str, rank: int, visible: bool, name: str) -> None:
        super().__init__()
        self.style, self.run, self.group = style, run, group
        self.rank, self.visible, self.name = rank, visible, name

    def postProcessLayer(self, layer, context, feedback) -> None:  # noqa: N802 - QGIS API
        if layer is None or not layer.isValid():
            return
        layer.setName(self.name)
        self.style(layer)
        project = context.project() or QgsProject.instance()
        file_layer(layer, project, self.run, self.group, self.rank, self.visible)


def new_run() -> str:
    """A key for one run's group (two runs of the same name get a group each)."""
    return uuid.uuid4().hex


def load_as_group(
    context: QgsProcessingContext,
    output: str,
    group: str,
    layers: list[tuple[str, str, Callable, bool]],
    run: str,
    first_rank: int = 0,
) -> None:
    """Have Processing load ``layers`` (uri, name, style, visible) instead of ``output``, styled, in
    the top-level group of ``run`` (named ``group``), ordered by rank from ``first_rank`` (lower on top).

    No LayerDetails.groupName (QGIS 3.32+): Processing would put the layers into any group of
    that name, an earlier run's too. Nothing happens when the user chose not to open the output.
    """
    pending = context.layersToLoadOnCompletion()
    if output not in pending:
        return
    details = pending.pop(output)
    for rank, (uri, name, style, visible) in enumerate(layers):
        # the output itself keeps Processing's entry (and its layer type); other layers get one each
        entry = details if uri == output else QgsProcessingContext.LayerDetails(name, details.project, name)
        entry.name = name
        entry.forceName = True
        placer = RunLayerPlacer(style, run, group, first_rank + rank, visible, name)
        _POST_PROCESSORS.append(placer)
        entry.setPostProcessor(placer)
        pending[uri] = entry
    context.setLayersToLoadOnCompletion(pending)
