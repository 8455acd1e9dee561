"""transformers' TrainerCallback events, raised by ple's own training loop, so that callbacks
written for the transformers Trainer or TRL work with ple's trainers too."""

from __future__ import annotations

from transformers import TrainerControl, TrainerState


class Callbacks:
    """Calls each callback's `event(args, state, control, **kwargs)` in order, as the
    transformers Trainer does; `args` is the ple config. A callback may return a new
    TrainerControl; `control.should_training_stop` ends training after the step."""

    def __init__(self, callbacks: list, args, is_main_process: bool = True):
        self.callbacks = [cb() if isinstance(cb, type) else cb for cb in callbacks]
        self.args = args
        self.state = TrainerState(max_steps=args.max_steps, save_steps=args.save_steps,
                                  eval_steps=args.eval_steps, logging_steps=1,
                                  train_batch_size=args.batch_size,
                                  is_local_process_zero=is_main_process,
                                  is_world_process_zero=is_main_process)
        self.control = TrainerControl()

    def __call__(self, event: str, **kwargs) -> TrainerControl:
        for callback in self.callbacks:
            result = getattr(callback, event)(self.args, self.state, self.control, **kwargs)
            if result is not None:
                self.control = result
        return self.control
