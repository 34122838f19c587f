"""What kt's command line (``ktcli``) and its plugins (``registry_plugins``) both build on.

Standard library only, and importing neither package: the command line imports it before
torch loads, and a config's ``custom_imports=['registry_plugins']`` loads the plugins with
it but without the command line.
"""
