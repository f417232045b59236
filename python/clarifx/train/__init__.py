"""Training for clarifx's embedded default models: ``python -m clarifx.train CONFIG.json``.

- ``clarifx.train.degrade``: seeded synthetic degradation pipeline (LR, HR pairs).
- ``clarifx.train.archs``: the architectures (``FastSR``) and ``param_count``.
- ``clarifx.train.__main__``: the trainer (``main(argv)``, ``train(config, ...)``,
  ``evaluate_photos(model, paths, scale)``).
"""
