"""What the user asked for and where we run: flags > environment > config file > platform default.

config (the resolved ``Settings``), configfile (``datastage config``), machine (Colab, AutoDL,
SageMaker detection), ranks (torchrun / DDP ranks).
"""
