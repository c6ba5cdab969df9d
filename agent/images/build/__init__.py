"""`orchestr build`: a Dockerfile subset built on the image service and the runtime.

dockerfile.py parses (pure), ignore.py filters the context (pure), builder.py
runs the steps: configuration steps change the image config, filesystem steps
(RUN, COPY, ADD, WORKDIR) run over an overlay of the image so far and turn the
overlay's upper directory into a layer.
"""
