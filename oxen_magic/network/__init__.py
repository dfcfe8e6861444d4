"""The network: the Oxen API client, the transport it has (retries, redirects, byte caps, TLS), keys,
model descriptions, image decoding and the on-disk cache of the API's answers.
"""
