"""The synthetic world: the project's own hand-object images, written in the real dataset layouts.

The MANO hand, the YCB scans and the HO3D and Dex-YCB images cannot be shipped, so ``hfl_lite``
makes stand-ins and writes them in the datasets' own formats, which the readers of
:mod:`hfl_lite.data` then read unchanged:

    objects    YCB-like objects with the real outer dimensions (meshes, colours, signed distances)
    grasp      grasps of an object by the (stand-in) MANO hand
    render     a small torch rasteriser: shading, backgrounds, sensor noise
    scene      a grasp seen by a random camera, as meshes to render
    writers    the HO3D and Dex-YCB layouts (exact inverses of the readers)
    generate   whole sets and the ``python -m hfl_lite synth`` command

Nothing in :mod:`hfl_lite.data` imports this package: the format conventions both sides share
live on the reading side (:mod:`hfl_lite.data.formats`).
"""
