"""The model registry: an event-sourced projection of the lifecycle topic.

- ``lifecycle``: states, legal moves and aliases (the state machine);
- ``versions``: a registered version, parsed from its ``registered`` event;
- ``traffic``: each model's split between champion, challengers, canary and shadows;
- ``alarms``: a model's open audit alarm and the promotions it freezes;
- ``planning``: a command checked against the projection, as the event it would publish;
- ``model_registry``: :class:`ModelRegistry`, which folds events and answers queries.
"""
