"""Data, training, fine-tuning, compression, export, evaluation and reporting for the models
in `models/`; `python -m pipeline --help` lists the commands."""
