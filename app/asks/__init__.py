"""Asks: members' resource requests circulated to their peers by email, offers routed back privately.

`sources` makes asks (from an update's asks section, from mail to the group's address),
`control` decides whether one may circulate, `circulate` mails it to the other members,
`offers` routes their answers to the asker, `closure` closes, withdraws and follows up, `inbound`
is the handler `app.replies` calls (`addressing` finds the group a message was sent to), `held`
tells the facilitator of held group mail and releases it, `tick` the periodic step, `packet` the
packet's listing.
"""
