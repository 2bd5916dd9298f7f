"""Workstation side: fine-tune, evaluate and export BLIP for the vehicle. Imports no rclpy.

The flat core is the training pipeline: `captions` (labels -> caption text) and `attributes` (caption -> driving
facts, the scorer), `data` / `splits` / `bddx_mixing` / `balanced_sampling` (what a step trains on), `config` and
`dataclass_args` (flags and recipes), `modeling` and `checkpoint`, `train`, `eval` with `metrics` and `report`,
`compare`, `export` (ONNX / TensorRT) and `demo`. Two families have packages of their own:

- `datasets`: the loaders (BDD100K, BDD-X, Cityscapes, synthetic frames) and the records and input limits they share.
- `drives`: recorded drives as rosbag2 (from BDD100K videos and stills, or synthetic), captioning many of them on Ray,
  and the scenario index and search over their captions.
"""
