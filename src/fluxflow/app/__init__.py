"""``fluxflow-app``: a local Gradio app to generate images with a fluxflow pipeline and to watch training.

Gradio is imported only by :mod:`fluxflow.app.ui` and the tab modules (``pip install 'fluxflow[app]'``); the
others (model access and caching, request limits, run folders) need neither gradio nor, until a model loads,
torch.
"""

APP_EXTRA = "pip install 'fluxflow[app]'"
