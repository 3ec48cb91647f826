"""Why a test skips, said the same way everywhere: the extra that brings what it needs (`pytest -rs` shows it)."""

DMC_EXTRA = 'needs the dmc extra: pip install -e ".[dmc]" && python -m planet_colab.dmc_install'
SWEEP_EXTRA = 'needs the sweep extra (Ray, TensorBoard): pip install -e ".[sweep]"'
VIDEO_EXTRA = 'needs imageio-ffmpeg to write MP4: pip install -e ".[video]"'
TEST_EXTRA = 'needs the test extra (nbclient, nbformat): pip install -e ".[test]"'
