"""moto's server, with ECS task ids in the format ECS issues today.

ECS task ids are 32 hex digits since ECS's new ARN format (the catalogue's `ecs-stop-task`
accepts only those); moto 5 still issues the older UUID form. This wrapper makes moto's
tasks carry the current form and otherwise runs `moto_server` unchanged (same arguments).
"""

from moto.ecs import models
from moto.server import main

_task_init = models.Task.__init__


def _task_init_current_id(self, *args, **kwargs):
    _task_init(self, *args, **kwargs)
    self.id = self.id.replace("-", "")


models.Task.__init__ = _task_init_current_id

if __name__ == "__main__":
    main()
