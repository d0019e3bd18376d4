"""``python -m hfl_lite bench``: speed measured against this machine's own limits.

Every figure is measured in the same process, side by side with the reference it is compared
to, so the ratios mean something on any machine: the model's achieved GFLOP/s against the
measured single-precision matmul peak, the plain model against its fast inference copy
(:func:`hfl_lite.model.optimize_for_inference`), the backbone against a plain ResNet-50,
batched EPnP against a loop over OpenCV. On CUDA the same code synchronises, warms up and
takes the median of several runs on the GPU. Results go to stdout as one table and to a JSON
file (default ``bench_results/bench.json``).

Sections (``--sections``, default all but ``book``, which ``--book`` adds), one module each:

    peak       fp32 matmul throughput (GFLOP/s), the yardstick of the others
    inference  HFLNet forward, plain and fast, images/s and GFLOP/s (paper preset, 256 x 256)
    train      one training step (forward, loss, backward, Adam) per preset: images/s, peak memory
    backbone   HFL-Net's backbone beside torchvision's ResNet-50 at the same input size
    epnp       batched EPnP against a loop over cv2.solvePnP, also under a competing CPU load and,
               on a GPU, as a CUDA graph (module ``epnp``, with ``voting``)
    voting     votes -> pose (top-10 voting + RANSAC EPnP) against the reference's loop
    data       DataLoader samples/s with 2 workers on the samples' ho3d set; --cache fill rate
    render     synthetic-scene renderer images/s (:mod:`hfl_lite.synth.render`)
    browser    the Try it page's time per image in headless Chromium (WebAssembly, 1 and several
               threads) beside predict_image in PyTorch and the graph in ONNX Runtime for Python
    book       execution time of each chapter in _toc.yml and of the whole book (HFL_PRESET=cpu)

``timing`` holds the measuring helpers they share, ``load`` the competing CPU load of the
``epnp`` section's second pass, ``settings`` the sizes of a run and the form of a result row,
``cli`` the command. ``--tiny`` shrinks every section (small sizes, one run
each, the CPU preset for the network) so that the whole command takes a minute or two on a
small CPU; its figures only show that everything runs. Everything but ``book`` works from an
installed package: the data samples come from :func:`hfl_lite.samples.samples_root`; the book
section runs the chapters of a repository checkout (``--book-root``, default the checkout
holding the package), and the browser section needs that checkout's ``node_modules`` and headless
Chromium (without them it records why it was skipped).
"""
