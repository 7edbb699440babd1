"""The app around the frame path: the ``vcam`` command, the live daemon and its controls (control
channel, ``vcam ctl``, tray, hotkeys), settings, device listing and the offline render job."""
