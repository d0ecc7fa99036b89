"""One exception type for problems the user can fix (bad paths, files, settings)."""


class CelebaeError(ValueError):
    """A one-line, user-facing error: it names the thing that is wrong and the fix.

    The CLI prints it as ``celebae: error: <message>`` and exits with status 2,
    never with a traceback.
    """
