"""SIP trunk carrier (RFC 3261 subset, RTP, RFC 4733). Built in a later issue."""
