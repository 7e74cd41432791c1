"""Compatibility layers: other libraries' public surfaces, implemented on meta-dist's own code.

`meta_dist.compat.l2l` stands in for learn2learn (`from meta_dist.compat import l2l` in place of
`import learn2learn as l2l`), so existing scripts run unchanged and their task pipelines can feed
meta-dist's distributed trainer through `l2l.bridge`. A layer reproduces the documented behaviour
of the surface it covers, not the other library's internals, and never imports that library.
"""
