"""What the Streamlit pages and the Gradio demo compute, one module per page concern.

No UI code and no Streamlit or Gradio import here: the pages only lay out what these modules
return (finished `Cell`s, rows of tables, the data of figures).

    views       checkpoints as the app lists them (best AUROC first), planned methods, counts, device
    selection   each page's default selection, 'best N' and 'select all'
    cells       `Cell` (one picture or the reason there is none, its colour bar) and the result grids
    analysis    running checkpoints on one image, `MethodResult`, the out-of-distribution check
    units       what a method's score and map measure (residual, KL, ELBO, NLL, interpolation factor)
    formatting  3 significant digits, ordinals, '–' for missing values
    exports     full-resolution heatmaps with a colour bar, the ZIP of all results (Upload)
    uploads     an upload decoded once, under the apps' decoded-size cap (Upload, Gradio)
    folders     allow-listed data folders and labelled dataset splits
    demo_set    the embedded demo images and a labelled demo set with synthetic lesions
    tails       disk-cached score sets, ROC/PR curves, densities, best/average/worst cases
    lesion_lab  synthetic lesions, before/after cells, the size x contrast Dice sweep
    myth        the manifold test and the curse-of-resolution series
    benchmarks  evaluation tables, intensity floors, the papers' reported numbers
"""
