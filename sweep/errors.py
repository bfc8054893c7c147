"""Exceptions that end a command or a trial, raised where the problem is found."""


class SweepError(Exception):
    """Bad input or an unusable environment: reported as one line by the CLI, exit code 2."""


class TrainingDiverged(Exception):
    """The loss became NaN or infinite: further steps cannot recover, so the trial stops."""


class TrainingStopped(Exception):
    """Stopped from outside between two steps (the study's time ran out): not the trial's fault."""
