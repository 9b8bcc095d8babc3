"""fundguard.optimizer: the fund target and premium rates under a solvency constraint."""

__all__: list[str] = []
