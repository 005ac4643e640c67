"""SIP for the agent and the responder: messages, transports, transactions, SDP, RTP, calls."""
